"""The PostgreSQL connector (layer: connectors), on psycopg 3.

Reads stream through a named (server-side) cursor. Writes use COPY; an upsert COPYs into a
temporary staging table, then merges it with one `INSERT ... SELECT ... ON CONFLICT DO UPDATE`.

Pass-through (`PassThrough`): the source streams `COPY (SELECT ...) TO STDOUT` of one key or
incremental range at a time, and the target feeds those bytes, undecoded, to `COPY ... FROM
STDIN`. Between PostgreSQL databases with identical column types the format is binary; to and
from other dialects it is the shared text form of `_tsv` (booleans selected as 0/1, timestamptz
as UTC wall time); into a CSV file, PostgreSQL writes the file's own lines (`csv_out`).
Savepoints (psycopg's nested `transaction()`) make each bulk attempt atomic, so refused rows can
be isolated. `cancel()` is libpq's cancel request, sent from the calling thread.

Content: `host`, `port`, `database_name`, `user_name`, `password`, and optionally `schema`
(openfdi's own field: the schema unqualified table names resolve to; default: the server's
search_path). Sessions run in UTC, so timestamptz values arrive as UTC datetimes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import select
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any, Self

import psycopg
import psycopg.sql
from psycopg.abc import Buffer

from openfdi.connectors._sqlbase import (
    ColumnCheck,
    Convert,
    SqlConnector,
    pick_columns,
    port_of,
    require,
)
from openfdi.connectors._tsv import CSV, FILE_CSV, TSV, csv_form, file_csv_form, tsv_form
from openfdi.connectors._values import (
    as_naive_utc,
    date_of,
    format_interval,
    only_dates,
    to_time_of_day,
    within_scale,
)
from openfdi.connectors.errors import (
    InvalidContentError,
    SliceRefusedError,
    TerminalConnectorError,
)
from openfdi.connectors.postgres import SPEC, errors, loaders, types
from openfdi.connectors.postgres.binary import BinaryColumns, binary_columns
from openfdi.connectors.postgres.copyin import write_rows
from openfdi.connectors.postgres.csv_out import (
    REFUSED,
    csv_copy_options,
    csv_expression,
    spellable,
)
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

__all__ = ["PostgresConnector"]

CONNECT_TIMEOUT_SECONDS = 10
CANCEL_TIMEOUT_SECONDS = 5.0

_COLUMNS_SQL = """
SELECT a.attname,
       bt.typname,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       a.attnotnull,
       format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_PRIMARY_KEY_SQL = """
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.ord
"""
_TABLES_SQL = """
SELECT n.nspname, c.relname, n.nspname = current_schema()
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND has_table_privilege(c.oid, 'SELECT')
"""


PASSTHROUGH_FORMAT = "postgresql-copy-binary"
# Native types mapped to TEXT whose binary form carries no database-specific OID (arrays and
# composites embed their element types' OIDs, which differ between databases: never passed).
_PASSTHROUGH_TEXT_TYPES = frozenset({"text", "name", "interval", "inet", "cidr", "macaddr", "xml"})
# Bytes per chunk handed from the source's COPY to the target's.
CHUNK_BYTES = 1 << 20


class _Stopped(Exception):
    """Abandons a pass-through slice when the engine asks to stop."""


class _Stream:
    def __init__(self, cursor: psycopg.ServerCursor[Row]) -> None:
        self._cursor = cursor

    def fetchmany(self, size: int) -> list[Row]:
        before = self._cursor.pgresult
        try:
            return self._cursor.fetchmany(size)
        except psycopg.DataError as exc:
            # A value psycopg cannot load ('infinity', a BC date): the chunk was fetched (a new
            # result) and only loading it failed, client-side (no SQLSTATE). Load it again
            # keeping such values as text (see `loaders`). Any other error stands.
            if exc.sqlstate is not None or self._cursor.pgresult is before:
                raise
            return loaders.load_again(self._cursor)

    def close(self, *, exhausted: bool) -> None:
        self._cursor.close()


def _savepoint(conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
    """A savepoint of the connection's open transaction, which it opens when there is none.

    psycopg's `transaction()` on a connection with no transaction open begins one and commits
    it at the end of the block: a write made then was committed by itself, before (and apart
    from) the position the engine saves with it, and a rollback after it (a stop) undid
    nothing. A write is the target's uncommitted work until the engine's `commit()`."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.execute("SELECT 1")  # psycopg opens the transaction (BEGIN) before a statement
    return conn.transaction()


def copy_messages(copy: psycopg.Copy, conn: psycopg.Connection[Any]) -> Iterator[Buffer]:
    """A `COPY ... TO STDOUT`'s messages (one row each). Those libpq already holds are taken
    from it directly, one C call each: psycopg's per-message generators cost about a
    microsecond a row, which held back a CSV export as much as the server's own work
    (bench/files.py). psycopg still waits for the socket (in `read`), and ends an abandoned
    COPY when its block exits."""
    pgconn = conn.pgconn
    while True:
        nbytes, data = pgconn.get_copy_data(1)  # 1: never blocks
        if nbytes > 0:
            yield data
        elif nbytes == 0:  # nothing received yet: psycopg waits for it
            waited = copy.read()
            if not waited:
                return
            yield waited
        else:  # the COPY's end: its result says whether it failed
            _copy_result(conn)
            return


def _copy_result(conn: psycopg.Connection[Any]) -> None:
    pgconn = conn.pgconn
    failed = None
    while True:  # every result, until none is left (else the next query finds them)
        while pgconn.is_busy():  # waiting without holding the GIL (a cancel may come)
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        if failed is None and result.status != psycopg.pq.ExecStatus.COMMAND_OK:
            failed = result
    if failed is not None:
        raise psycopg.errors.error_from_result(failed, encoding=conn.info.encoding)


class _Slice(RawSlice):
    """One range of a pass-through read: `COPY (SELECT ...) TO STDOUT`, binary or text."""

    def __init__(
        self,
        owner: PostgresConnector,
        plan: ReadPlan,
        form: tuple[str, ...],
        copy_sql: str,
        conditions: Sequence[str],
        position: Any,
    ) -> None:
        self._owner = owner
        self._plan = plan
        self.form = form
        self._copy_sql = copy_sql
        self._conditions = tuple(conditions)
        self.position = position
        self.nbytes = 0

    def chunks(self) -> Generator[bytes, None, None]:
        owner = self._owner
        owner._ensure_live()
        conn = owner._connection()
        # The savepoint keeps the read transaction (and its snapshot) usable if the slice is
        # abandoned: psycopg then cancels the COPY, which would otherwise abort the transaction.
        framed = self.form[0] == FILE_CSV
        with owner._errors():
            try:
                with (
                    conn.transaction(),
                    conn.cursor() as cursor,
                    cursor.copy(self._copy_sql) as copy,
                ):
                    buffer = bytearray()
                    rows = 0
                    for data in copy_messages(copy, conn):  # one row per message
                        buffer += data
                        rows += 1
                        if len(buffer) >= CHUNK_BYTES:
                            yield self._chunk(buffer, rows, framed)
                            buffer.clear()
                            rows = 0
                    if buffer:
                        yield self._chunk(buffer, rows, framed)
            except psycopg.errors.InvalidTextRepresentation as exc:
                if REFUSED not in str(exc):
                    raise
                # A value `csv_out` cannot spell as the row path writes it (NaN, infinity...).
                raise SliceRefusedError("a value has no CSV spelling here") from None
            owner._ensure_live()

    def _chunk(self, buffer: bytearray, rows: int, framed: bool) -> bytes:
        chunk = b"%d\n" % rows + buffer if framed else bytes(buffer)
        self.nbytes += len(chunk)
        return chunk

    def batches(self) -> Generator[Batch, None, None]:
        yield from self._owner._read_batches(self._plan, self._conditions, end_read=False)


_DEFAULT_TIME_PRECISION = re.compile(r"^(timestamp|time)\(6\)")


def _same_on_the_wire(native_type: str) -> str:
    """Spell a type so that two columns compare equal when their binary COPY format is the same:
    `timestamp(6)` is `timestamp` (6 digits is PostgreSQL's default and maximum)."""
    return _DEFAULT_TIME_PRECISION.sub(r"\1", native_type)


_TEXT_OR_NULL = frozenset({str, type(None)})


def _without_tzinfo(values: Sequence[Any]) -> bool:
    """No value has a time zone (NULLs, naive datetimes, text...): none is shifted to UTC."""
    zones = set(map(getattr, values, itertools.repeat("tzinfo"), itertools.repeat(None)))
    return zones <= {None}


def _no_duration(values: Sequence[Any]) -> bool:
    """No value is a timedelta: none needs turning into a time of day or an interval's text."""
    return timedelta not in set(map(type, values))


def _interval_text(value: Any) -> Any:
    # psycopg writes a timedelta as days and seconds apart ("-1 days +86399 seconds" for minus
    # one second), which an interval keeps as such; MySQL's form is what the source meant.
    return format_interval(value) if isinstance(value, timedelta) else value


_INT_OR_NULL = frozenset({int, type(None)})
_DECIMAL_OR_NULL = frozenset({Decimal, type(None)})
_EXPONENT = attrgetter("exponent")


def _within_scale_check(scale: int) -> ColumnCheck:
    """Whether every value is an int, or a decimal with at most `scale` decimals (so none can
    be rounded); NaN's exponent is text, which sends the column to the per-value check."""

    def check(values: Sequence[Any]) -> bool:
        kinds = set(map(type, values))
        if kinds <= _INT_OR_NULL:
            return True
        if not kinds <= _DECIMAL_OR_NULL:
            return False
        try:
            # filter(None) drops the NULLs, and the zeros, which any scale holds.
            exponents = map(_EXPONENT, map(Decimal.as_tuple, filter(None, values)))
            return bool(min(exponents, default=0) >= -scale)
        except TypeError:
            return False

    return check


def _all_text(values: Sequence[Any]) -> bool:
    """Every value is text or NULL: none is serialised as a JSON document."""
    return set(map(type, values)) <= _TEXT_OR_NULL


def _is_interval(column: Column) -> bool:
    """An interval column (read as TEXT, see `types`), or one to be created for an INTERVAL."""
    return column.type is LogicalType.INTERVAL or (
        column.type is LogicalType.TEXT and column.native_type.startswith("interval")
    )


def database_identity(conn: psycopg.Connection[Any]) -> str:
    """`<system identifier>/<database oid>` of the database `conn` is connected to: the same
    for every address that reaches it, different for every other database."""
    row = conn.execute(
        "SELECT system_identifier::text || '/' || "
        "(SELECT oid FROM pg_database WHERE datname = current_database())::text "
        "FROM pg_control_system()"
    ).fetchone()
    if row is None:  # pragma: no cover - the function always returns one row
        raise TerminalConnectorError("PostgreSQL did not say which database this is")
    return str(row[0])


def _own_database_error() -> InvalidContentError:
    return InvalidContentError(
        "the database is openfdi's own metadata database, which no data source may reach",
        field="database_name",
    )


class PostgresConnector(SqlConnector, PassThrough):
    """POSTGRESQL datasource."""

    nulls_first = " NULLS FIRST"

    def __init__(self, content: Mapping[str, Any], host: HostPaths | None = None) -> None:
        super().__init__(content)
        require(content, *SPEC.required_content)
        self._params: dict[str, Any] = {
            "host": str(content["host"]).strip(),
            "port": port_of(content, 5432),
            "dbname": str(content["database_name"]),
            "user": str(content["user_name"]),
            "password": str(content.get("password") or ""),
        }
        schema = content.get("schema")
        self._schema = str(schema) if schema else None
        if self._schema is not None:
            self.q(self._schema)
        self._own = tuple(d for d in (host or HostPaths()).own_databases if d.type == SPEC.type)
        for own in self._own:  # the cheap check, by address; `_refuse_own` is the sure one
            if (
                self._params["host"].lower() in own.hosts
                and self._params["port"] == own.port
                and self._params["dbname"] == own.database
            ):
                raise _own_database_error()
        self._conn: psycopg.Connection[Row] | None = None
        self._cursor_ids = itertools.count(1)
        self._typnames: dict[str, dict[str, str]] = {}
        """Base type name (pg_type.typname) of each column, by table, as last described."""

    # --- connection ----------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Row]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                **self._params,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name="openfdi",
                autocommit=False,
            )
            # extra_float_digits > 0 makes the server print floats exactly (shortest round-trip).
            settings = "SET TIME ZONE 'UTC'; SET extra_float_digits = 3"
            if self._schema is not None:
                settings += f"; SET search_path TO {self.q(self._schema)}"
            conn.execute(settings)
            conn.commit()
            self._refuse_own(conn)
            self._conn = conn
        return self._conn

    @classmethod
    def create(cls, content: Mapping[str, Any], host: HostPaths) -> Self:
        return cls(content, host)

    def _refuse_own(self, conn: psycopg.Connection[Row]) -> None:
        """Close `conn` and refuse it if it reached openfdi's own metadata database, by what the
        server says it is: a cluster's system identifier (readable by any role) and the
        database's oid in it."""
        if not any(own.identity for own in self._own):
            return
        try:
            reached: str | None = database_identity(conn)
        except psycopg.Error:
            reached = None  # a server that does not say (the function revoked): by name, then
        conn.rollback()
        if any(
            own.identity == reached if reached else own.database == self._params["dbname"]
            for own in self._own
        ):
            conn.close()
            raise _own_database_error()

    def _errors(self) -> AbstractContextManager[None]:
        return errors.map_driver_errors(self._secrets, self._cancelled.is_set)

    def check(self) -> None:
        self._ensure_live()
        with self._errors():
            conn = self._connection()
            conn.execute("SELECT 1").fetchone()
            conn.rollback()

    def list_tables(self) -> list[str]:
        self._ensure_live()
        with self._errors():
            conn = self._connection()
            rows = conn.execute(_TABLES_SQL).fetchall()
            conn.rollback()
        return sorted(name if current else f"{schema}.{name}" for schema, name, current in rows)

    def _describe_or_none(self, table: str) -> TableSchema | None:
        conn = self._connection()
        found = conn.execute("SELECT to_regclass(%s)::oid", (self.qualified(table),)).fetchone()
        if found is None or found[0] is None:
            return None
        oid = found[0]
        primary = tuple(name for (name,) in conn.execute(_PRIMARY_KEY_SQL, (oid,)))
        found_columns = conn.execute(_COLUMNS_SQL, (oid,)).fetchall()
        columns = tuple(
            types.column_from_catalog(
                name,
                typname,
                typmod,
                nullable=not notnull,
                is_primary_key=name in primary,
                native_type=native,
            )
            for name, typname, typmod, notnull, native in found_columns
        )
        self._typnames[table] = {row[0]: row[1] for row in found_columns}
        return TableSchema(table, columns, primary)

    # --- reading -------------------------------------------------------------------------------

    def _select_expression(self, column: Column) -> str:
        # Text-like logical types are read as text: json/jsonb keep their document text, and
        # types mapped to TEXT (uuid, interval, arrays, enums...) arrive as strings.
        if column.type in (LogicalType.TEXT, LogicalType.VARCHAR, LogicalType.JSON):
            return f"{self.q(column.name)}::text"
        return self.q(column.name)

    def _read_converter(self, column: Column) -> Convert | None:
        return None  # psycopg already returns the SPI's types, in UTC for timestamptz

    def _literal(self, value: Any) -> str:
        return psycopg.sql.Literal(value).as_string(self._connection())

    def _open_stream(self, sql: str) -> _Stream:
        conn = self._connection()
        cursor = conn.cursor(name=f"openfdi_read_{next(self._cursor_ids)}")
        cursor.execute(sql)
        return _Stream(cursor)

    def _end_read(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.rollback()

    # --- pass-through --------------------------------------------------------------------------

    def passthrough_forms(
        self, table: str, columns: Sequence[str], *, as_target: bool
    ) -> tuple[tuple[str, ...], ...]:
        schema = self.describe(table)
        picked = pick_columns(schema, columns)
        forms: list[tuple[str, ...]] = []
        if all(
            c.type is not LogicalType.TEXT or c.native_type in _PASSTHROUGH_TEXT_TYPES
            for c in picked
        ):
            forms.append((PASSTHROUGH_FORMAT, *(_same_on_the_wire(c.native_type) for c in picked)))
        text = tsv_form(picked)
        if text is not None:
            forms.append(text)
        csv = csv_form(picked) if as_target else None  # a CSV file's bytes, COPY ... CSV
        if csv is not None:
            forms.append(csv)
        if not as_target and all(spellable(c) for c in picked) and self._writes_file_csv():
            # A CSV file's lines, written by the server: ahead of TSV, which the file target
            # would parse and spell again (it accepts this form only for a plain CSV file).
            file_csv = file_csv_form(picked)
            if file_csv is not None:
                forms.insert(1 if forms and forms[0][0] == PASSTHROUGH_FORMAT else 0, file_csv)
        return tuple(forms)

    def _writes_file_csv(self) -> bool:
        """A UTF-8 database (text arrives as it is stored), PostgreSQL 12 or later (whose
        float8 text with extra_float_digits 1 is the shortest that reads back)."""
        with self._errors():
            info = self._connection().info
        return info.parameter_status("server_encoding") == "UTF8" and info.server_version >= 120000

    def _tsv_expression(self, column: Column) -> str:
        """A column as `_tsv` writes it (COPY's text of everything else already is)."""
        if column.type is LogicalType.BOOLEAN:
            return f"{self.q(column.name)}::int"
        if column.type is LogicalType.TIMESTAMPTZ:
            return f"({self.q(column.name)} AT TIME ZONE 'UTC')"
        return self._select_expression(column)

    def read_raw(self, plan: ReadPlan, form: tuple[str, ...]) -> Generator[RawSlice, None, None]:
        schema = self.describe(plan.table)
        columns = pick_columns(schema, plan.columns or schema.names)
        incremental = None
        if plan.incremental_column:
            incremental = pick_columns(schema, (plan.incremental_column,))[0]
        text = form[0] == TSV
        file_csv = form[0] == FILE_CSV
        if text:
            select = ", ".join(self._tsv_expression(c) for c in columns)
            options = ""
        elif file_csv:
            select = ", ".join(csv_expression(c, self.q(c.name)) for c in columns)
            options = csv_copy_options(columns, self.q)
        else:
            select = ", ".join(self.q(c.name) for c in columns)
            options = " (FORMAT binary)"
        source = self.qualified(plan.table)

        def copy_sql(conditions: Sequence[str]) -> str:
            sql = f"SELECT {select} FROM {source}"
            if conditions:
                sql += " WHERE " + " AND ".join(conditions)
            if incremental is not None:  # upserts keep the last of equal keys: keep read order
                sql += f" ORDER BY {self.q(incremental.name)}"
            return f"COPY ({sql}) TO STDOUT{options}"

        def make_slice(conditions: list[str], position: Any) -> RawSlice:
            return _Slice(self, plan, form, copy_sql(conditions), conditions, position)

        self._end_read()
        try:
            with self._errors():
                # One snapshot for every slice, as one `read()` would see.
                conn = self._connection()
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                if text or file_csv:  # dates in the one spelling every dialect reads
                    conn.execute("SET LOCAL datestyle = 'ISO, YMD'")
                if file_csv:  # doubles in their shortest text (csv_out re-spells it)
                    conn.execute("SET LOCAL extra_float_digits = 1")
                    conn.execute("SET LOCAL client_encoding = 'UTF8'")  # the file's
                    conn.execute("SET LOCAL TimeZone = 'UTC'")  # timestamptz text ends +00
                    # The spelling's long expressions made PostgreSQL JIT-compile every slice's
                    # query: 0.3 s each, four times the cost of the rows (bench/files.py).
                    conn.execute("SET LOCAL jit = off")
            yield from self._range_slices(plan, schema, self._first_row, make_slice)
        finally:
            with contextlib.suppress(Exception):
                self._end_read()

    def _first_row(self, sql: str) -> Row | None:
        return self._connection().execute(sql).fetchone()

    def write_raw(self, raw: RawSlice, plan: WritePlan, stop: Callable[[], bool]) -> int | None:
        self._ensure_live()
        if plan.table not in self._targets:
            self._targets[plan.table] = self.describe(plan.table)
        target = self._targets[plan.table]
        if plan.columns is None:
            raise TerminalConnectorError("a pass-through write needs the target columns")
        columns = pick_columns(target, plan.columns)
        names = ", ".join(self.q(c.name) for c in columns)
        conn = self._connection()
        stopped = False
        with self._errors():
            try:
                with _savepoint(conn):  # a refused or stopped slice leaves nothing
                    into = self.qualified(plan.table)
                    if plan.write_mode is WriteMode.UPSERT:
                        into = self._stage(conn, plan.table, names)
                    options = {TSV: "", CSV: " (FORMAT csv)"}.get(raw.form[0], " (FORMAT binary)")
                    statement = f"COPY {into} ({names}) FROM STDIN{options}"
                    with conn.cursor() as cursor:
                        with (
                            cursor.copy(statement) as copy,
                            contextlib.closing(raw.chunks()) as chunks,
                        ):
                            for chunk in chunks:
                                if stop():
                                    stopped = True
                                    raise _Stopped
                                copy.write(chunk)
                        written = cursor.rowcount
                    if plan.write_mode is WriteMode.UPSERT:
                        self._merge(conn, plan, columns, into, names)
            except _Stopped:
                pass
            except psycopg.Error as exc:
                if errors.is_row_error(exc) and not self._cancelled.is_set():
                    reason = str(exc).split("\nCONTEXT:")[0].strip()
                    raise SliceRefusedError(self._redact(f"PostgreSQL: {reason}")) from None
                raise
        return None if stopped else written

    # --- writing -------------------------------------------------------------------------------

    def _render_type(self, column: Column, *, in_key: bool) -> str:
        return types.ddl_type(column)

    def _write_converter(self, column: Column) -> Convert | None:
        if column.type is LogicalType.TIMESTAMP:
            # PostgreSQL ignores the offset in text input for `timestamp` columns: convert an
            # aware value to UTC wall time here, as a cast from timestamptz would in a UTC session.
            return lambda v: as_naive_utc(v) if hasattr(v, "tzinfo") else v
        if column.type is LogicalType.JSON:
            return lambda v: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        if column.type is LogicalType.DECIMAL and column.scale is not None:
            # PostgreSQL rounds a numeric to the column's scale without a word: refuse instead.
            precision, scale = column.precision, column.scale
            return lambda v: within_scale(v, precision, scale)
        if column.type is LogicalType.DATE:
            return date_of  # PostgreSQL's date drops a time of day given to it without a word
        if column.type is LogicalType.TIME:
            # A duration (a MySQL TIME) is a time of day only within 00:00..24:00: refused, with
            # its value, otherwise (never wrapped around midnight).
            return to_time_of_day
        if _is_interval(column):
            return _interval_text
        return None

    def _write_unchanged(self, column: Column) -> ColumnCheck | None:
        # The checks `_write_converter`'s functions pass a value through on, over a whole column.
        if column.type is LogicalType.TIMESTAMP:
            return _without_tzinfo
        if column.type is LogicalType.JSON:
            return _all_text
        if column.type is LogicalType.TIME or _is_interval(column):
            return _no_duration
        if column.type is LogicalType.DECIMAL and column.scale is not None:
            return _within_scale_check(column.scale)
        if column.type is LogicalType.DATE:
            return only_dates
        return None

    def _truncate_sql(self, qualified: str) -> str:
        return f"TRUNCATE {qualified}"  # transactional in PostgreSQL, and far faster than DELETE

    def _execute(self, sql: str) -> None:
        self._connection().execute(sql)

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        with _savepoint(self._connection()):
            yield

    def _bulk_write(
        self, table: str, columns: Sequence[Column], rows: list[Row], plan: WritePlan
    ) -> None:
        conn = self._connection()
        names = ", ".join(self.q(c.name) for c in columns)
        typnames = self._typnames.get(table, {})
        binary = binary_columns([typnames.get(c.name, "") for c in columns])
        if binary is not None and not binary.fits(rows):
            binary = None  # some value needs the server's text parsing (or refusal)
        if plan.write_mode is not WriteMode.UPSERT:
            self._copy(conn, f"COPY {self.qualified(table)} ({names}) FROM STDIN", rows, binary)
            return
        stage = self._stage(conn, table, names)
        self._copy(conn, f"COPY {stage} ({names}) FROM STDIN", rows, binary)
        self._merge(conn, plan, columns, stage, names)

    def _stage(self, conn: psycopg.Connection[Row], table: str, names: str) -> str:
        """The (created if needed) temporary table an upsert's rows are copied into first."""
        stage = self.q(
            "openfdi_stage_" + hashlib.sha256(f"{table}\0{names}".encode()).hexdigest()[:16]
        )
        conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS "
            f"SELECT {names} FROM {self.qualified(table)} WITH NO DATA"
        )
        return stage

    def _merge(
        self,
        conn: psycopg.Connection[Row],
        plan: WritePlan,
        columns: Sequence[Column],
        stage: str,
        names: str,
    ) -> None:
        """Upsert the staged rows into the target, then empty the stage."""
        keys = ", ".join(self.q(k) for k in plan.key_columns)
        updates = [
            f"{self.q(c.name)} = EXCLUDED.{self.q(c.name)}"
            for c in columns
            if c.name not in plan.key_columns
        ]
        action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        # One key twice in a batch would make ON CONFLICT touch a row twice, which PostgreSQL
        # refuses; keep the last occurrence (highest ctid: the stage is only ever appended to).
        conn.execute(
            f"INSERT INTO {self.qualified(plan.table)} ({names}) "
            f"SELECT DISTINCT ON ({keys}) {names} FROM {stage} ORDER BY {keys}, ctid DESC "
            f"ON CONFLICT ({keys}) {action}"
        )
        conn.execute(f"TRUNCATE {stage}")

    @staticmethod
    def _copy(
        conn: psycopg.Connection[Row],
        statement: str,
        rows: list[Row],
        binary: BinaryColumns | None,
    ) -> None:
        if binary is not None:
            statement += " (FORMAT binary)"
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            if binary is not None:
                copy.set_types(binary.types)
            write_rows(copy, rows, binary=binary is not None)

    def _row_error(self, exc: Exception) -> str | None:
        if not errors.is_row_error(exc):
            return None
        # The CONTEXT lines locate the row inside the failed slice ("COPY t, line 1"): noise.
        return str(exc).split("\nCONTEXT:")[0].strip()

    def _commit_ddl(self) -> None:
        self.commit()

    def _created_concurrently(self, exc: Exception) -> bool:
        return isinstance(exc, errors.CREATED_CONCURRENTLY)

    def commit(self) -> None:
        self._ensure_live()
        if self._conn is not None:
            with self._errors():
                self._conn.commit()

    def rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            with self._errors():
                self._conn.rollback()

    def _interrupt(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return
        if hasattr(conn, "cancel_safe"):  # psycopg >= 3.2: does not block on a slow network
            conn.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
        else:
            conn.cancel()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with self._errors():
                conn.close()  # closing without commit discards the open transaction
