"""The SQLite connector (layer: connectors): stdlib sqlite3, one file per datasource.

Writes run in one explicit `BEGIN IMMEDIATE` transaction (the write lock is taken up front
instead of failing to upgrade a read lock later) with `executemany` as the bulk path. Reads step
the statement lazily, so a large table is never held in memory. `cancel()` is
`sqlite3.Connection.interrupt()`, which SQLite allows from any thread.

As a pass-through source (`PassThrough`, never a target: SQLite has no bulk loader to feed), it
reads key ranges in one read transaction as lines of the shared text form (see `tsv`).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Self

from openfdi.connectors._sqlbase import (
    Convert,
    RowsConvert,
    SqlConnector,
    pick_columns,
    require,
)
from openfdi.connectors._tsv import tsv_form
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.connectors.spi import (
    Batch,
    Column,
    HostPaths,
    LogicalType,
    PassThrough,
    RawSlice,
    ReadPlan,
    Row,
    TableSchema,
    WriteMode,
    WritePlan,
)
from openfdi.connectors.sqlite import columnar, errors, paths, tsv, types

__all__ = ["SqliteConnector"]

BUSY_TIMEOUT_SECONDS = 10.0
# Encoded bytes per pass-through chunk, about (sized on the previous chunk's lines).
CHUNK_BYTES = 1 << 20
FIRST_CHUNK_ROWS = 64  # before any line's size is known: rows may be megabytes each
MAX_CHUNK_ROWS = 20_000


class _Stream:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def fetchmany(self, size: int) -> list[Row]:
        return self._cursor.fetchmany(size)

    def close(self, *, exhausted: bool) -> None:
        self._cursor.close()


def literal(value: Any) -> str:
    """A stored SQLite value (None, int, float, str or bytes) as a SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int):
        return str(int(value))
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{value}'"
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQLite literal for {type(value).__name__}")


@contextmanager
def _text_as_bytes(conn: sqlite3.Connection) -> Iterator[None]:
    """TEXT values come as their UTF-8 bytes (for the fetches inside only: the connection is
    shared with everything else the connector reads)."""
    conn.text_factory = bytes
    try:
        yield
    finally:
        conn.text_factory = str


class _Slice(RawSlice):
    """One range of a pass-through read: SELECT of the rows' lines in the text form."""

    def __init__(
        self,
        owner: SqliteConnector,
        plan: ReadPlan,
        form: tuple[str, ...],
        columns: Sequence[Column],
        conditions: Sequence[str],
        position: Any,
    ) -> None:
        self._owner = owner
        self._plan = plan
        self.form = form
        self._conditions = tuple(conditions)
        self.position = position
        self.nbytes = 0
        fields, finish = tsv.line_select(columns, owner.q)
        self._lines = tsv.lines_joiner(finish)
        self._sql = f"SELECT {', '.join(fields)} FROM {owner.q(plan.table)}"
        if conditions:
            self._sql += " WHERE " + " AND ".join(conditions)
        if plan.incremental_column:  # upserts keep the last of equal keys: keep read order
            self._sql += f" ORDER BY {owner.q(plan.incremental_column)}"

    def chunks(self) -> Generator[bytes, None, None]:
        owner = self._owner
        owner._ensure_live()
        with owner._errors():
            cursor = owner._connection().execute(self._sql)
        try:
            count = FIRST_CHUNK_ROWS
            conn = owner._connection()
            while True:
                with owner._errors(), _text_as_bytes(conn):
                    rows = cursor.fetchmany(count)
                if not rows:
                    return
                lines = self._lines(rows)
                lines.append(b"")
                data = b"\n".join(lines)
                del lines
                count = max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES * len(rows) // len(data)))
                del rows
                self.nbytes += len(data)
                yield data
        finally:
            cursor.close()

    def batches(self) -> Generator[Batch, None, None]:
        yield from self._owner._read_batches(self._plan, self._conditions, end_read=False)


class SqliteConnector(SqlConnector, PassThrough):
    """SQLITE datasource; `content["database_name"]` is the path of the database file, confined
    to the host's `HostPaths` (see `paths`)."""

    qualified_names = False

    def __init__(self, content: Mapping[str, Any], host: HostPaths | None = None) -> None:
        super().__init__(content)
        require(content, "database_name")
        self._host = host or HostPaths()
        self._raw_path: object = content["database_name"]
        self._path = self._confined()  # refuses a bad path now, before any I/O is attempted
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def create(cls, content: Mapping[str, Any], host: HostPaths) -> Self:
        return cls(content, host)

    def _confined(self) -> str:
        """The real path to open, checked again now: a link may have changed since."""
        raw = self._raw_path
        if isinstance(raw, str) and raw.strip() == paths.MEMORY:
            return paths.MEMORY
        return str(paths.confined_path(raw, self._host))

    # --- connection ----------------------------------------------------------------------------

    def _connection(self, *, create: bool = False) -> sqlite3.Connection:
        if self._conn is None:
            self._path = self._confined()
            if self._path != paths.MEMORY and not create and not Path(self._path).exists():
                raise TerminalConnectorError(f"SQLite database file {self._path!r} does not exist")
            # isolation_level=None: this class issues BEGIN/COMMIT itself. check_same_thread is
            # off because the engine may build a connector on one thread and run it on another;
            # it is never used by two threads at once.
            self._conn = sqlite3.connect(
                self._path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        return self._conn

    def _errors(self) -> AbstractContextManager[None]:
        return errors.map_driver_errors(self._secrets, self._cancelled.is_set)

    def check(self) -> None:
        self._ensure_live()
        self._path = self._confined()
        path = Path(self._path)
        if self._path != paths.MEMORY and not path.exists():
            # A missing file is fine for a target (the first write creates it) if it can be.
            if not path.parent.is_dir():
                raise TerminalConnectorError(f"directory of {self._path!r} does not exist")
            return
        with self._errors():
            self._connection().execute("SELECT count(*) FROM sqlite_master").fetchone()

    def list_tables(self) -> list[str]:
        self._ensure_live()
        with self._errors():
            rows = self._connection().execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            )
            return [name for (name,) in rows]

    def _describe_or_none(self, table: str) -> TableSchema | None:
        self.q(table)  # validate the name even though it travels as a parameter
        rows = (
            self._connection()
            .execute('SELECT name, type, "notnull", pk FROM pragma_table_info(?)', (table,))
            .fetchall()
        )
        if not rows:
            return None
        primary = tuple(name for name, _t, _n, pk in sorted(rows, key=lambda r: r[3]) if pk)
        columns = tuple(
            types.column_from_declared(
                name, declared, nullable=not notnull and not pk, is_primary_key=bool(pk)
            )
            for name, declared, notnull, pk in rows
        )
        return TableSchema(table, columns, primary)

    # --- reading -------------------------------------------------------------------------------

    def _select_expression(self, column: Column) -> str:
        return self.q(column.name)

    def _read_converter(self, column: Column) -> Convert | None:
        return types.reader_for(column)

    def _read_rows_converter(self, columns: Sequence[Column]) -> RowsConvert | None:
        # Column by column: value by value, converting costs more than SQLite takes to read.
        return columnar.rows_reader(columns)

    def _literal(self, value: Any) -> str:
        return literal(value)

    def _open_stream(self, sql: str) -> _Stream:
        return _Stream(self._connection().execute(sql))

    def _end_read(self) -> None:
        """Reads are single statements in autocommit mode: nothing to end."""

    # --- pass-through --------------------------------------------------------------------------

    def passthrough_forms(
        self, table: str, columns: Sequence[str], *, as_target: bool
    ) -> tuple[tuple[str, ...], ...]:
        if as_target:
            return ()
        picked = pick_columns(self.describe(table), columns)
        if any(c.type is LogicalType.DECIMAL and c.scale is None for c in picked):
            return ()  # read as Decimal(repr(v)), unquantized: no SQL spells that
        form = tsv_form(picked)
        return () if form is None else (form,)

    def read_raw(self, plan: ReadPlan, form: tuple[str, ...]) -> Generator[RawSlice, None, None]:
        schema = self.describe(plan.table)
        columns = pick_columns(schema, plan.columns or schema.names)

        def make_slice(conditions: list[str], position: Any) -> RawSlice:
            return _Slice(self, plan, form, columns, conditions, position)

        conn = self._connection()
        with self._errors():
            conn.execute("BEGIN")  # one read transaction: every slice sees the same data
        try:
            yield from self._range_slices(plan, schema, self._first_row, make_slice)
        finally:
            if conn.in_transaction:
                with self._errors():
                    conn.execute("ROLLBACK")

    def _first_row(self, sql: str) -> Row | None:
        row: Row | None = self._connection().execute(sql).fetchone()
        return row

    def write_raw(self, raw: RawSlice, plan: WritePlan, stop: Callable[[], bool]) -> int | None:
        raise TerminalConnectorError("SQLite is never a pass-through target")

    # --- writing -------------------------------------------------------------------------------

    def prepare_target(self, plan: WritePlan) -> TableSchema:
        with self._errors():
            self._connection(create=True)  # a target database file may not exist yet
        return super().prepare_target(plan)

    def _render_type(self, column: Column, *, in_key: bool) -> str:
        return types.declared_from_column(column)

    def _write_converter(self, column: Column) -> Convert | None:
        return types.writer_for(column)

    def _begin(self) -> sqlite3.Connection:
        conn = self._connection(create=True)
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        return conn

    def _execute(self, sql: str) -> None:
        self._begin().execute(sql)

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        conn = self._begin()
        conn.execute("SAVEPOINT openfdi_write")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO openfdi_write")
            conn.execute("RELEASE openfdi_write")
            raise
        conn.execute("RELEASE openfdi_write")

    def _bulk_write(
        self, table: str, columns: Sequence[Column], rows: list[Row], plan: WritePlan
    ) -> None:
        names = [self.q(c.name) for c in columns]
        sql = (
            f"INSERT INTO {self.q(table)} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        if plan.write_mode is WriteMode.UPSERT:
            keys = [self.q(k) for k in plan.key_columns]
            updates = [f"{n} = excluded.{n}" for n in names if n not in keys]
            action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
            sql += f" ON CONFLICT ({', '.join(keys)}) {action}"
        self._begin().executemany(sql, rows)

    def _row_error(self, exc: Exception) -> str | None:
        if isinstance(exc, sqlite3.Error) and errors.primary_code(exc) in errors.ROW_ERROR_CODES:
            return str(exc)
        if isinstance(exc, OverflowError):  # an integer wider than 64 bits
            return str(exc)
        return None

    def _commit_ddl(self) -> None:
        self.commit()

    def commit(self) -> None:
        self._ensure_live()
        if self._conn is not None and self._conn.in_transaction:
            with self._errors():
                self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            with self._errors():
                self._conn.execute("ROLLBACK")

    def _interrupt(self) -> None:
        if self._conn is not None:
            self._conn.interrupt()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with self._errors():
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
