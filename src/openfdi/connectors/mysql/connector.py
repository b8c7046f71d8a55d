"""The MySQL/MariaDB connector (layer: connectors), on PyMySQL and asyncmy.

Reads stream through an unbuffered cursor of asyncmy (compiled row parsing, several times faster
than PyMySQL's), on a connection of their own, read ahead by a thread (see `reader`). Everything
else runs on PyMySQL. Inserts are `LOAD DATA LOCAL INFILE` fed from memory (see `infile`), the
fastest way into MySQL; upserts are multi-row INSERTs (PyMySQL's `executemany` packs rows into
statements of up to about 1 MB) with `ON DUPLICATE KEY UPDATE`. Each write attempt runs inside a
SAVEPOINT so refused rows can be isolated. A pass-through slice in the text form is fed to LOAD
DATA as it comes, never decoded (see `tsv_write`). `cancel()` sends `KILL QUERY <thread id>` for
both connections from a third, short-lived one.

Sessions use UTC (`time_zone = '+00:00'`, so TIMESTAMP columns read and write as UTC instants)
and a fixed strict `sql_mode`, so bad values fail loudly instead of being silently truncated.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pymysql  # type: ignore[import-untyped]
import pymysql.connections  # type: ignore[import-untyped]
import pymysql.converters  # type: ignore[import-untyped]
import pymysql.cursors  # type: ignore[import-untyped]
from pymysql.constants import FIELD_TYPE  # type: ignore[import-untyped]

from openfdi.connectors._sql import split_qualified
from openfdi.connectors._sqlbase import (
    ColumnCheck,
    Convert,
    SqlConnector,
    pick_columns,
    port_of,
    require,
)
from openfdi.connectors._tsv import tsv_form
from openfdi.connectors._values import (
    as_naive_utc,
    date_of,
    only_dates,
    time_from_timedelta,
    to_time_of_day,
    within_scale,
)
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.connectors.mysql import SPEC, errors, infile, tsv_read, tsv_write, types
from openfdi.connectors.mysql.reader import AsyncReader, PrefetchStream
from openfdi.connectors.spi import (
    Column,
    LogicalType,
    PassThrough,
    RawSlice,
    ReadPlan,
    Row,
    TableSchema,
    WriteMode,
    WritePlan,
)

__all__ = ["MysqlConnector"]

CONNECT_TIMEOUT_SECONDS = 10
# No NO_BACKSLASH_ESCAPES: PyMySQL's quoting relies on backslash escapes.
SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)
# sql_notes = 0: notes (a decimal rounded to the column's scale) are not warnings, so a LOAD
# DATA with any warning at all refused some row (see infile.refusal).
INIT_COMMAND = f"SET time_zone = '+00:00', sql_mode = '{SQL_MODE}', sql_notes = 0"


def _fast_datetime(text: Any) -> Any:
    """DATETIME/TIMESTAMP text -> datetime, by the C parser; PyMySQL's own (a regex) for the
    rest (zero dates stay strings, as PyMySQL returns them)."""
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return pymysql.converters.convert_datetime(text)


def _fast_date(text: Any) -> Any:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        return pymysql.converters.convert_date(text)


# PyMySQL's conversions, with the hot date and time parsers replaced by faster, equivalent ones.
_CONVERSIONS = {
    **pymysql.converters.conversions,
    FIELD_TYPE.DATETIME: _fast_datetime,
    FIELD_TYPE.TIMESTAMP: _fast_datetime,
    FIELD_TYPE.DATE: _fast_date,
}

_COLUMNS_SQL = """
SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_MAXIMUM_LENGTH,
       NUMERIC_PRECISION, NUMERIC_SCALE
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s
ORDER BY ORDINAL_POSITION
"""
_PRIMARY_KEY_SQL = """
SELECT COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'
ORDER BY ORDINAL_POSITION
"""
# A table's CHECK constraints. MariaDB's JSON is LONGTEXT plus a json_valid() check named after
# the column; a TINYINT(1) is a boolean only with a check keeping it to 0 and 1, a TIME a time
# of day only with one keeping it within a day.
_MARIADB_CHECKS_SQL = """
SELECT CONSTRAINT_NAME, CHECK_CLAUSE
FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s
"""
# MySQL 8's CHECK_CONSTRAINTS has no table name; a NOT ENFORCED check guarantees nothing.
_MYSQL_CHECKS_SQL = """
SELECT cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE
FROM information_schema.TABLE_CONSTRAINTS tc
JOIN information_schema.CHECK_CONSTRAINTS cc
  ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
WHERE tc.TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND tc.TABLE_NAME = %s
  AND tc.CONSTRAINT_TYPE = 'CHECK' AND tc.ENFORCED = 'YES'
"""


class _Stream:
    """A read through the connector's asyncmy connection, read ahead by a thread."""

    def __init__(self, owner: MysqlConnector, reader: AsyncReader, sql: str) -> None:
        self._owner = owner
        self._reader = reader
        self._prefetch = reader.stream(sql)
        owner._prefetching = self._prefetch

    def fetchmany(self, size: int) -> Sequence[Row]:
        return self._prefetch.fetchmany(size)

    def close(self, *, exhausted: bool) -> None:
        self._owner._prefetching = None
        self._prefetch.close(exhausted=exhausted)
        if not exhausted:
            # The query was abandoned mid-result: its connection was closed under it.
            self._owner._drop_reader()


class MysqlConnector(SqlConnector, PassThrough):
    """MYSQL datasource (MySQL 8 or MariaDB 10.5+)."""

    quote = "`"

    def __init__(self, content: Mapping[str, Any]) -> None:
        super().__init__(content)
        require(content, *SPEC.required_content)
        self._params: dict[str, Any] = {
            "host": str(content["host"]).strip(),
            "port": port_of(content, 3306),
            "database": str(content["database_name"]),
            "user": str(content["user_name"]),
            "password": str(content.get("password") or ""),
        }
        self._conn: Any = None
        self._thread_id: int | None = None
        self._is_mariadb = False
        self._reader: AsyncReader | None = None
        self._prefetching: PrefetchStream | None = None

    # --- connection ----------------------------------------------------------------------------

    def _connect(self) -> infile.InfileConnection:
        return infile.InfileConnection(
            **self._params,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            binary_prefix=True,  # bytes go as _binary'...', never reinterpreted as text
            # Served from memory only, for the statement being run (see infile).
            local_infile=True,
            conv=_CONVERSIONS,
            init_command=INIT_COMMAND,
        )

    def _read_connection(self) -> AsyncReader:
        reader = self._reader
        if reader is not None and not reader.is_usable:
            self._drop_reader()
            reader = None
        if reader is None:
            reader = self._reader = AsyncReader(
                {
                    **self._params,
                    "charset": "utf8mb4",
                    "autocommit": False,
                    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                    "local_infile": False,
                    "init_command": INIT_COMMAND,
                }
            )
        return reader

    def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def _connection(self) -> Any:
        if self._conn is None:
            conn = self._connect()
            self._thread_id = conn.thread_id()
            self._is_mariadb = "mariadb" in conn.get_server_info().lower()
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn._force_close()  # just the socket: the server may be mid-result, or gone

    def _errors(self) -> AbstractContextManager[None]:
        return errors.map_driver_errors(self._secrets, self._cancelled.is_set)

    def _query(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        with self._connection().cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def check(self) -> None:
        self._ensure_live()
        with self._errors():
            self._query("SELECT 1")
            self._conn.rollback()

    def list_tables(self) -> list[str]:
        self._ensure_live()
        with self._errors():
            rows = self._query(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME"
            )
            self._conn.rollback()
        return [name for (name,) in rows]

    def _describe_or_none(self, table: str) -> TableSchema | None:
        self.q(table)  # validate the name, though it travels as parameters
        schema, name = split_qualified(table)
        rows = self._query(_COLUMNS_SQL, (schema, name))
        if not rows:
            return None
        primary = tuple(col for (col,) in self._query(_PRIMARY_KEY_SQL, (schema, name)))
        json_columns: set[str] = set()
        bool_columns: set[str] = set()
        time_columns: set[str] = set()
        if any(
            row[1] in ("longtext", "time") or row[2].lower().startswith("tinyint(1)")
            for row in rows
        ):
            checks = _MARIADB_CHECKS_SQL if self._is_mariadb else _MYSQL_CHECKS_SQL
            for constraint, clause in self._query(checks, (schema, name)):
                if (
                    self._is_mariadb
                    and clause.replace(" ", "") == f"json_valid({self.q(constraint)})"
                ):
                    json_columns.add(constraint)
                checked = types.bool_checked_column(clause)
                if checked is not None:
                    bool_columns.add(checked)
                checked = types.time_checked_column(clause)
                if checked is not None:
                    time_columns.add(checked)
        columns = tuple(
            types.column_from_catalog(
                col,
                data_type,
                column_type,
                nullable=is_nullable == "YES",
                is_primary_key=col in primary,
                char_length=length,
                precision=precision,
                scale=scale,
                is_json=col in json_columns,
                is_bool=col in bool_columns,
                is_time_of_day=col in time_columns,
            )
            for col, data_type, column_type, is_nullable, length, precision, scale in rows
        )
        return TableSchema(table, columns, primary)

    # --- reading -------------------------------------------------------------------------------

    def _select_expression(self, column: Column) -> str:
        name = self.q(column.name)
        base = column.native_type.split("(")[0].split(" ")[0].lower()
        if column.type is LogicalType.FLOAT:
            # The text protocol prints FLOAT with 6 digits; as DOUBLE it arrives exact.
            return f"CAST({name} AS DOUBLE)"
        if base and base not in types.DIRECT_TYPES:
            return f"CAST({name} AS CHAR)"
        return name

    def _read_converter(self, column: Column) -> Convert | None:
        kind = column.type
        if kind is LogicalType.BOOLEAN:
            return lambda v: bool(v) if isinstance(v, int) else v
        if kind is LogicalType.TIME:
            return _read_time
        if kind is LogicalType.TIMESTAMPTZ:
            # The session zone is UTC, so a naive TIMESTAMP value is UTC wall time.
            return lambda v: v.replace(tzinfo=UTC) if isinstance(v, datetime) else v
        return None

    def _literal(self, value: Any) -> str:
        literal: str = self._connection().literal(value)
        return literal

    def _open_stream(self, sql: str) -> _Stream:
        return _Stream(self, self._read_connection(), sql)

    def _end_read(self) -> None:
        if self._reader is not None:
            self._reader.rollback()
        if self._conn is not None:
            self._conn.rollback()

    # --- pass-through --------------------------------------------------------------------------

    def passthrough_forms(
        self, table: str, columns: Sequence[str], *, as_target: bool
    ) -> tuple[tuple[str, ...], ...]:
        form = tsv_form(pick_columns(self.describe(table), columns))
        return () if form is None else (form,)

    def read_raw(self, plan: ReadPlan, form: tuple[str, ...]) -> Generator[RawSlice, None, None]:
        return tsv_read.read_raw(self, plan, form)

    def write_raw(self, raw: RawSlice, plan: WritePlan, stop: Callable[[], bool]) -> int | None:
        self._ensure_live()
        if plan.columns is None:
            raise TerminalConnectorError("a pass-through write needs the target columns")
        if plan.table not in self._targets:
            self._targets[plan.table] = self.describe(plan.table)
        columns = pick_columns(self._targets[plan.table], plan.columns)
        table = self.qualified(plan.table)
        names = tuple(self.q(c.name) for c in columns)
        updates = None
        if plan.write_mode is WriteMode.UPSERT:
            updates = self._upsert_updates(table, names, plan.key_columns)
        target = tsv_write.TsvTarget(table, names, updates)
        with self._errors():  # also redacts the refusal's message
            return tsv_write.write_slice(
                self._connection(), self._savepoint, raw, target, stop, self._cancelled.is_set
            )

    # --- writing -------------------------------------------------------------------------------

    def _render_type(self, column: Column, *, in_key: bool) -> str:
        return types.ddl_type(column, in_key=in_key)

    def _column_constraint(self, column: Column) -> str:
        if column.type is LogicalType.BOOLEAN:
            return " " + types.bool_check(self.q(column.name))
        if column.type is LogicalType.TIME:
            return " " + types.time_check(self.q(column.name))
        return ""

    def _create_suffix(self) -> str:
        # A binary collation compares and uniquely indexes text like PostgreSQL and SQLite do
        # (case-sensitive); MariaDB's NOPAD variant also keeps 'a' and 'a ' apart.
        collation = "utf8mb4_nopad_bin" if self._is_mariadb else "utf8mb4_bin"
        return f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"

    def prepare_target(self, plan: WritePlan) -> TableSchema:
        with self._errors():
            self._connection()  # learn the server flavour before rendering DDL
        return super().prepare_target(plan)

    def _write_converter(self, column: Column) -> Convert | None:
        kind = column.type
        if kind in (LogicalType.TIMESTAMP, LogicalType.TIMESTAMPTZ):
            # PyMySQL drops tzinfo when quoting: make it UTC wall time first (session is UTC).
            return lambda v: as_naive_utc(v) if isinstance(v, datetime) else v
        if kind is LogicalType.DECIMAL and column.scale is not None:
            # MySQL rounds a decimal to the column's scale with only a note: refuse instead.
            precision, scale = column.precision, column.scale
            return lambda v: within_scale(_finite(v), precision, scale)
        if kind in (LogicalType.DOUBLE, LogicalType.FLOAT, LogicalType.DECIMAL):
            return _finite
        if kind is LogicalType.DATE:
            return date_of  # MySQL drops a time of day given to a DATE with only a note
        if kind is LogicalType.TIME:
            # A TIME checked to hold times of day (see `types`): say why a duration cannot go.
            return to_time_of_day
        if kind is LogicalType.JSON:
            return lambda v: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        return None

    def _write_unchanged(self, column: Column) -> ColumnCheck | None:
        # The checks `_write_converter`'s functions pass a value through on, over a whole column.
        if column.type is LogicalType.DATE:
            return only_dates
        if column.type is LogicalType.TIME:
            return lambda values: timedelta not in set(map(type, values))
        return None

    def _execute(self, sql: str) -> None:
        with self._connection().cursor() as cursor:
            cursor.execute(sql)

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        with self._connection().cursor() as cursor:
            cursor.execute("SAVEPOINT openfdi_write")
            try:
                yield
            except BaseException:
                # After a deadlock the server has rolled everything back: no savepoint left.
                with contextlib.suppress(pymysql.err.Error):
                    cursor.execute("ROLLBACK TO SAVEPOINT openfdi_write")
                raise
            cursor.execute("RELEASE SAVEPOINT openfdi_write")

    def _bulk_write(
        self, table: str, columns: Sequence[Column], rows: list[Row], plan: WritePlan
    ) -> None:
        if plan.write_mode is not WriteMode.UPSERT:
            self._load(table, columns, rows)
            return
        names = [self.q(c.name) for c in columns]
        qualified = self.qualified(table)
        updates = self._upsert_updates(qualified, names, plan.key_columns)
        # executemany %-formats the statement text, so any % in a name is doubled.
        into = f"INSERT INTO {qualified} ({', '.join(names)}) VALUES ".replace("%", "%%")
        values = "(" + ", ".join("%s" for _ in names) + ")"
        suffix = f" ON DUPLICATE KEY UPDATE {updates}".replace("%", "%%")
        with self._connection().cursor() as cursor:
            cursor.executemany(into + values + suffix, rows)

    def _upsert_updates(
        self, qualified: str, names: Sequence[str], key_columns: Sequence[str]
    ) -> str:
        """An upsert's `ON DUPLICATE KEY UPDATE` assignments: each non-key column takes the new
        row's value (a no-op assignment when every column is a key).

        Args:
            qualified: The target table, quoted.
            names: The written columns, quoted.
            key_columns: The upsert's keys, unquoted.
        """
        keys = {self.q(k) for k in key_columns}
        # VALUES(col) is understood by MariaDB and (deprecated but working) by MySQL 8. The
        # no-op names the target's column: an INSERT ... SELECT's source has one of that name.
        updates = [f"{n} = VALUES({n})" for n in names if n not in keys] or [
            f"{n} = {qualified}.{n}" for n in names[:1]
        ]
        return ", ".join(updates)

    def _load(self, table: str, columns: Sequence[Column], rows: list[Row]) -> None:
        """Insert `rows` with LOAD DATA; a refused row fails the whole load, as an INSERT would."""
        names = [self.q(c.name) for c in columns]
        binary = [i for i, c in enumerate(columns) if c.type is LogicalType.BINARY]
        qualified = self.qualified(table)
        conn = self._connection()
        loaded, warnings = conn.load(
            lambda name: infile.load_data_sql(name, qualified, names, binary),
            infile.encode_rows(rows, binary),
        )
        if warnings:
            raise infile.refusal(conn)
        if loaded != len(rows):
            raise TerminalConnectorError(f"LOAD DATA stored {loaded} rows of {len(rows)}")

    def _row_error(self, exc: Exception) -> str | None:
        if not errors.is_row_error(exc):
            return None
        return str(exc.args[1]) if len(exc.args) > 1 else str(exc)

    def _commit_ddl(self) -> None:
        self.commit()

    def commit(self) -> None:
        self._ensure_live()
        if self._conn is not None:
            with self._errors():
                self._conn.commit()

    def rollback(self) -> None:
        if self._conn is not None:
            with self._errors():
                self._conn.rollback()

    def _interrupt(self) -> None:
        reader = self._reader
        victims = [
            thread_id
            for thread_id in (
                self._thread_id if self._conn is not None else None,
                reader.thread_id if reader is not None else None,
            )
            if thread_id is not None
        ]
        if not victims:
            return
        killer = self._connect()
        try:
            with killer.cursor() as cursor:
                for thread_id in victims:
                    with contextlib.suppress(pymysql.err.Error):  # it may have ended already
                        cursor.execute("KILL QUERY %s", (thread_id,))
        finally:
            killer.close()

    def close(self) -> None:
        stream, self._prefetching = self._prefetching, None
        if stream is not None:
            stream.close(exhausted=False)
        with contextlib.suppress(Exception):  # a dead connection has nothing to roll back
            self._drop_reader()
        if self._conn is not None:
            try:
                self._conn.rollback()
            except pymysql.err.Error:
                pass  # a dead connection has nothing left to roll back
            finally:
                self._drop_connection()


def _read_time(value: Any) -> Any:
    # A TIME column checked to hold times of day only (see `types`); must not raise.
    if isinstance(value, timedelta):
        with contextlib.suppress(ValueError):
            return time_from_timedelta(value)
    return value


def _finite(value: Any) -> Any:
    # MySQL cannot store NaN or infinities, and PyMySQL would quote them as bare words that
    # break the whole statement; refusing the row here makes it dirty data instead.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} cannot be stored by MySQL")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"{value} cannot be stored by MySQL")
    return value
