"""What the SQL connectors share (layer: connectors): read, prepare and write around dialect hooks.

`SqlConnector` holds the algorithm: build the SELECT from checked identifiers, stream it in
bounded batches, create a missing target from the source schema, convert values for the target
and write them in bulk while isolating refused rows. A dialect supplies the hooks: quoting, type
mapping, value conversion, its bulk statement, savepoints, and its driver's error seam.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from decimal import Decimal
from itertools import repeat
from operator import is_, itemgetter
from typing import Any, ClassVar, Protocol

from openfdi.connectors._batching import stream_batches
from openfdi.connectors._json_text import unencodable_text
from openfdi.connectors._rejects import write_isolating_rejects
from openfdi.connectors._sql import quote_ident, split_qualified
from openfdi.connectors._values import (
    as_naive_utc,
    as_utc,
    parse_datetime,
    parse_interval,
    typed_sizer,
)
from openfdi.connectors.errors import (
    InvalidContentError,
    QueryCancelledError,
    TableNotFoundError,
    TerminalConnectorError,
    redact,
)
from openfdi.connectors.spi import (
    Batch,
    Column,
    Connector,
    LogicalType,
    Positions,
    RawSlice,
    ReadPlan,
    RejectedRow,
    Row,
    TableSchema,
    WriteMode,
    WritePlan,
    WriteResult,
)
from openfdi.domain.datasource import SECRET_FIELDS

Convert = Callable[[Any], Any]
FirstRow = Callable[[str], Row | None]
"""Runs a query inside the pass-through's read snapshot and returns its first row, if any."""
MakeSlice = Callable[[list[str], Any], RawSlice]
"""A pass-through slice of the rows matching SQL conditions (ANDed), with its `position`."""
RowsConvert = Callable[[Sequence[Row]], list[Row]]
ColumnCheck = Callable[[Sequence[Any]], bool]
"""A cheap test over a whole column of values (NULLs included)."""
ColumnConvert = Callable[[Sequence[Any]], list[Any] | None]
"""A column's values (NULLs included) -> converted values, or None when none of them changes."""

_INTEGERS = frozenset({LogicalType.BIGINT, LogicalType.INT, LogicalType.SMALLINT})
_VARIABLE = frozenset({LogicalType.VARCHAR, LogicalType.TEXT, LogicalType.JSON, LogicalType.BINARY})
_FIXED_BYTES = {LogicalType.BOOLEAN: 1, LogicalType.DECIMAL: 16, LogicalType.DATE: 4}

# A pass-through slice should take about this long to move: long enough to amortise its range
# query, commit and checkpoint, short enough to checkpoint often. A stop does not wait for it
# (see the targets' write_raw).
SLICE_SECONDS = 0.5
MAX_SLICE_ROWS = 2_000_000
# Key types a full copy may be sliced by (a single-column primary key of one of these).
SLICEABLE = frozenset(
    {
        LogicalType.BIGINT,
        LogicalType.INT,
        LogicalType.SMALLINT,
        LogicalType.DECIMAL,
        LogicalType.VARCHAR,
        LogicalType.DATE,
        LogicalType.TIMESTAMP,
        LogicalType.TIMESTAMPTZ,
    }
)


class Stream(Protocol):
    """A server-side (streaming) result set."""

    def fetchmany(self, size: int) -> Sequence[Row]: ...

    def close(self, *, exhausted: bool) -> None:
        """Release it; `exhausted` is False when the reader stopped before the end."""


def row_converter(converters: Sequence[Convert | None]) -> Callable[[Row], Row] | None:
    """One function applying a converter per column (None values stay None), or None if no-op."""
    active = [(i, f) for i, f in enumerate(converters) if f is not None]
    if not active:
        return None

    def convert(row: Row) -> Row:
        out = list(row)
        for i, func in active:
            value = out[i]
            if value is not None:
                out[i] = func(value)
        return tuple(out)

    return convert


def column_converter(convert: Convert, unchanged: ColumnCheck | None) -> ColumnConvert:
    """`convert` applied to a column's non-NULL values, skipped when `unchanged` vouches that it
    would return every value as it is (the common case: no per-value call at all)."""

    def run(values: Sequence[Any]) -> list[Any] | None:
        if unchanged is not None and unchanged(values):
            return None
        if not any(map(is_, values, repeat(None))):
            return list(map(convert, values))
        return [None if v is None else convert(v) for v in values]

    return run


def _converted(
    fetch: Callable[[int], Sequence[Row]], convert: RowsConvert
) -> Callable[[int], Sequence[Row]]:
    """`fetch`, with each chunk it returns converted as a whole."""
    return lambda size: convert(fetch(size))


def sizer_for(columns: Sequence[Column]) -> Callable[[Sequence[Row]], int]:
    """A row-size estimator that measures only the text and binary columns."""
    variable = [i for i, c in enumerate(columns) if c.type in _VARIABLE]
    fixed = sum(_FIXED_BYTES.get(c.type, 8) for c in columns if c.type not in _VARIABLE)
    return typed_sizer(variable, fixed)


def coerce_watermark(value: Any, column: Column) -> Any:
    """Turn a saved watermark (often the JSON text of a checkpoint) into the column's value type."""
    kind = column.type
    if kind in (LogicalType.TIMESTAMP, LogicalType.TIMESTAMPTZ):
        stamp = parse_datetime(value) if isinstance(value, str) else value
        if isinstance(stamp, datetime):
            return as_utc(stamp) if kind is LogicalType.TIMESTAMPTZ else as_naive_utc(stamp)
        return stamp
    if kind is LogicalType.DATE and isinstance(value, str):
        return date.fromisoformat(value[:10])
    if kind is LogicalType.INTERVAL and isinstance(value, str):
        return parse_interval(value)
    if kind in _INTEGERS and isinstance(value, str | float):
        return int(value)
    if kind is LogicalType.DECIMAL and isinstance(value, str | int | float):
        return Decimal(str(value))
    if kind in (LogicalType.DOUBLE, LogicalType.FLOAT) and isinstance(value, str | int):
        return float(value)
    return value


def require(content: Mapping[str, Any], *keys: str) -> None:
    """Raise InvalidContentError naming the first of `keys` missing or empty in `content`."""
    for key in keys:
        value = content.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidContentError(f"datasource content is missing {key!r}", field=key)


def port_of(content: Mapping[str, Any], default: int) -> int:
    """The `port` field (string or int) as an int in 1..65535."""
    raw = content.get("port", default)
    try:
        port = int(str(raw).strip())
    except ValueError:
        raise InvalidContentError(f"port {raw!r} is not a number") from None
    if not 0 < port < 65536:
        raise InvalidContentError(f"port {port} is out of range")
    return port


POSITIONS_TABLE = "openfdi_positions"
"""Where a SQL target keeps each task's read position (see `Positions`), in its default schema."""


class SqlConnector(Connector, Positions):
    """A connector over a SQL database reached through a DB-API driver."""

    quote: ClassVar[str] = '"'
    """The identifier quote character."""
    qualified_names: ClassVar[bool] = True
    """`schema.table` names a table in another schema (database, for MySQL)."""
    nulls_first: ClassVar[str] = ""
    """What to add to ORDER BY so NULLs sort first, if the dialect does not by default."""

    def __init__(self, content: Mapping[str, Any]) -> None:
        self._content = dict(content)
        self._secrets = tuple(
            str(v) for k, v in content.items() if k in SECRET_FIELDS and v not in (None, "")
        )
        self._cancelled = threading.Event()
        self._targets: dict[str, TableSchema] = {}

    # --- dialect hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def _errors(self) -> AbstractContextManager[None]:
        """The driver's error seam, with this datasource's secrets and cancel flag."""

    @abc.abstractmethod
    def _describe_or_none(self, table: str) -> TableSchema | None:
        """The schema, or None if the table does not exist. Runs inside `_errors()`."""

    @abc.abstractmethod
    def _render_type(self, column: Column, *, in_key: bool) -> str:
        """Native DDL type for a logical column (`in_key`: part of a primary or unique key)."""

    @abc.abstractmethod
    def _select_expression(self, column: Column) -> str:
        """How to select a column so the driver returns it in its SPI type (quoted name, cast)."""

    @abc.abstractmethod
    def _read_converter(self, column: Column) -> Convert | None:
        """Driver value -> SPI value for one column; must not raise (keep the raw value)."""

    def _read_rows_converter(self, columns: Sequence[Column]) -> RowsConvert | None:
        """Driver rows -> SPI rows, a fetched chunk at a time; None if they need no conversion.

        By default `_read_converter` value by value. A dialect can override it to convert a
        chunk column by column, which is much cheaper when many values need converting.
        """
        convert = row_converter([self._read_converter(c) for c in columns])
        if convert is None:
            return None
        return lambda rows: list(map(convert, rows))

    @abc.abstractmethod
    def _write_converter(self, column: Column) -> Convert | None:
        """SPI value -> driver value for one column; ValueError/TypeError rejects the row."""

    def _write_unchanged(self, column: Column) -> ColumnCheck | None:
        """A cheap whole-column test that `_write_converter` would return each value as it is.

        A write converts a batch a column at a time; a column this test passes is not converted
        value by value. None (the default) when the dialect has no such test.
        """
        return None

    @abc.abstractmethod
    def _literal(self, value: Any) -> str:
        """`value` (as `_write_converter` made it) as a SQL literal of the dialect."""

    @abc.abstractmethod
    def _execute(self, sql: str) -> None:
        """Run one statement inside the current write transaction (starting it if needed)."""

    @abc.abstractmethod
    def _open_stream(self, sql: str) -> Stream:
        """Start a streaming query in a read transaction."""

    @abc.abstractmethod
    def _end_read(self) -> None:
        """End the read transaction, so the next poll sees new rows."""

    @abc.abstractmethod
    def _savepoint(self) -> AbstractContextManager[None]:
        """Make the block atomic inside the write transaction: on error, undo it and re-raise."""

    @abc.abstractmethod
    def _bulk_write(
        self, table: str, columns: Sequence[Column], rows: list[Row], plan: WritePlan
    ) -> None:
        """Write rows (already converted) with the dialect's bulk path and plan.write_mode."""

    @abc.abstractmethod
    def _row_error(self, exc: Exception) -> str | None:
        """The reason if `exc` means a row's values were refused; None for any other failure."""

    @abc.abstractmethod
    def _commit_ddl(self) -> None:
        """Commit after CREATE TABLE."""

    def _created_concurrently(self, exc: Exception) -> bool:
        """Whether `exc`, raised by `CREATE TABLE IF NOT EXISTS`, says another session created
        the same table at the same moment (the table exists once that error is seen)."""
        return False

    @abc.abstractmethod
    def _interrupt(self) -> None:
        """Interrupt the running statement (called from another thread)."""

    def _truncate_sql(self, qualified: str) -> str:
        # DELETE, not TRUNCATE: it stays inside the write transaction, so a failed run leaves
        # the old rows in place. PostgreSQL overrides this (its TRUNCATE is transactional).
        return f"DELETE FROM {qualified}"

    def _create_suffix(self) -> str:
        return ""

    def _column_constraint(self, column: Column) -> str:
        """What follows a created column's type and NOT NULL (a CHECK keeping it to the logical
        type's values where the native type holds more)."""
        return ""

    # --- shared algorithm ------------------------------------------------------------------------

    def q(self, name: str) -> str:
        """Quote one identifier."""
        return quote_ident(name, self.quote)

    def qualified(self, table: str) -> str:
        """Quote a table name, `schema.table` included."""
        if not self.qualified_names:
            return self.q(table)
        schema, name = split_qualified(table)
        return f"{self.q(schema)}.{self.q(name)}" if schema else self.q(name)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _ensure_live(self) -> None:
        if self._cancelled.is_set():
            raise QueryCancelledError("the connector was cancelled")

    def cancel(self) -> None:
        self._cancelled.set()
        # Never raises: if the interrupt cannot be sent, the flag still stops the next batch.
        with contextlib.suppress(Exception):
            self._interrupt()

    def describe(self, table: str) -> TableSchema:
        self._ensure_live()
        with self._errors():
            schema = self._describe_or_none(table)
        if schema is None:
            raise TableNotFoundError(f"table {table!r} does not exist")
        return schema

    def read(self, plan: ReadPlan) -> Iterator[Batch]:
        return self._read_batches(plan)

    def _read_batches(
        self, plan: ReadPlan, extra: Sequence[str] = (), *, end_read: bool = True
    ) -> Iterator[Batch]:
        """`read()`, with `extra` SQL conditions ANDed to the plan's; `end_read=False` leaves the
        read transaction open (a pass-through slice re-read inside its snapshot)."""
        schema = self.describe(plan.table)
        columns = pick_columns(schema, plan.columns or schema.names)
        incremental = None
        if plan.incremental_column:
            incremental = pick_columns(schema, (plan.incremental_column,))[0]
        position = columns.index(incremental) if incremental in columns else None
        if incremental is not None and position is None:
            # The incremental column is needed for the watermark even if not asked for; it is
            # read as an extra last field and dropped from the rows the caller sees.
            return self._read_with_hidden_position(plan, columns, incremental, extra, end_read)
        with self._errors():
            sql = self._select_sql(plan, columns, incremental, extra)
        convert = self._read_rows_converter(columns)
        return self._stream(sql, columns, plan, position, convert, end_read=end_read)

    def _read_with_hidden_position(
        self,
        plan: ReadPlan,
        columns: list[Column],
        incremental: Column,
        extra: Sequence[str],
        end_read: bool,
    ) -> Iterator[Batch]:
        widened = [*columns, incremental]
        with self._errors():
            sql = self._select_sql(plan, widened, incremental, extra)
        convert = self._read_rows_converter(widened)
        names = tuple(c.name for c in columns)
        size = sizer_for(columns)
        stream = self._stream(sql, widened, plan, len(columns), convert, end_read=end_read)
        for batch in stream:
            rows = [row[:-1] for row in batch.rows]
            yield Batch(names, rows, size(rows), batch.position, batch.last)

    def _watermark_condition(self, plan: ReadPlan, incremental: Column | None) -> str | None:
        """`column > watermark`, the watermark rendered as a literal; None without a watermark."""
        if plan.watermark is None or incremental is None:
            return None
        value = coerce_watermark(plan.watermark, incremental)
        return f"{self.q(incremental.name)} > {self._value_literal(value, incremental)}"

    def _value_literal(self, value: Any, column: Column) -> str:
        """A column's SPI value as a SQL literal of the dialect."""
        to_driver = self._write_converter(column)
        return self._literal(to_driver(value) if to_driver is not None else value)

    def _select_sql(
        self,
        plan: ReadPlan,
        columns: Sequence[Column],
        incremental: Column | None,
        extra: Sequence[str] = (),
    ) -> str:
        # No bound parameters: the watermark is rendered as a literal by the driver's own quoting,
        # so user SQL in `where` never has to be escaped for a placeholder syntax.
        select = ", ".join(self._select_expression(c) for c in columns)
        sql = f"SELECT {select} FROM {self.qualified(plan.table)}"
        conditions: list[str] = []
        if plan.where:
            conditions.append(f"({plan.where})")
        after = self._watermark_condition(plan, incremental)
        if after is not None:
            conditions.append(after)
        conditions.extend(extra)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        if incremental is not None:
            sql += f" ORDER BY {self.q(incremental.name)}{self.nulls_first}"
        return sql

    def _stream(
        self,
        sql: str,
        columns: Sequence[Column],
        plan: ReadPlan,
        position: int | None,
        convert: RowsConvert | None,
        *,
        end_read: bool = True,
    ) -> Iterator[Batch]:
        self._ensure_live()
        stream: Stream | None = None
        try:
            with self._errors():
                stream = self._open_stream(sql)
                fetch: Callable[[int], Sequence[Row]] = stream.fetchmany
                if convert is not None:
                    fetch = _converted(fetch, convert)
                yield from stream_batches(
                    fetch,
                    tuple(c.name for c in columns),
                    plan,
                    position_index=position,
                    before_fetch=self._ensure_live,
                    sizer=sizer_for(columns),
                )
                # A cancel can land after the last fetch, or be swallowed by the server (MySQL's
                # SLEEP() returns 1 when killed): the flag, not the driver, decides.
                self._ensure_live()
        except BaseException:
            # Failed, cancelled, or the caller stopped early (GeneratorExit): release quietly,
            # the original exception is the one worth reporting.
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close(exhausted=False)
                if end_read:
                    self._end_read()
            raise
        with self._errors():
            if stream is not None:
                stream.close(exhausted=True)
            if end_read:
                self._end_read()

    def _range_slices(
        self, plan: ReadPlan, schema: TableSchema, first_row: FirstRow, make_slice: MakeSlice
    ) -> Generator[RawSlice, None, None]:
        """`plan`'s rows as pass-through slices, in incremental order: ranges of the incremental
        column, else of a single-column primary key of a `SLICEABLE` type, else one slice.

        `first_row` runs the range queries; it must see the slices' snapshot.
        """
        incremental = None
        if plan.incremental_column:
            incremental = pick_columns(schema, (plan.incremental_column,))[0]
        key = incremental
        if key is None and len(schema.primary_key) == 1:
            primary = schema.column(schema.primary_key[0])
            key = primary if primary.type in SLICEABLE else None
        base: list[str] = [f"({plan.where})"] if plan.where else []
        with self._errors():
            after = self._watermark_condition(plan, incremental)
        if key is None:
            yield make_slice(base, None)
            return
        yield from self._key_slices(
            plan, key, incremental is not None, base, after, first_row, make_slice
        )

    def _key_slices(
        self,
        plan: ReadPlan,
        key: Column,
        incremental: bool,
        base: list[str],
        after: str | None,
        first_row: FirstRow,
        make_slice: MakeSlice,
    ) -> Generator[RawSlice, None, None]:
        """Slices of consecutive `key` ranges `(lo, hi]`, each about SLICE_SECONDS of work."""
        name = self.q(key.name)
        source = self.qualified(plan.table)
        if incremental and after is None:
            # Rows whose incremental column is NULL come first, as `read()` orders them.
            nulls = [*base, f"{name} IS NULL"]
            exists = f"SELECT EXISTS (SELECT 1 FROM {source} WHERE {' AND '.join(nulls)})"
            with self._errors():
                found = first_row(exists)
            if found is not None and found[0]:
                yield make_slice(nulls, None)
        lower = after if after is not None else f"{name} IS NOT NULL"
        # The watermark a slice ends at must be the value `read()` would report for that row.
        to_spi = self._read_converter(key)
        rows = plan.batch_rows
        while True:
            self._ensure_live()
            conditions = [*base, lower]
            # The last of the next `rows` keys, in the column's own order (not its text's).
            bound = (
                f"SELECT {self._select_expression(key)} FROM (SELECT {name} FROM {source} "
                f"WHERE {' AND '.join(conditions)} ORDER BY {name} LIMIT {rows}) AS s "
                f"ORDER BY {name} DESC LIMIT 1"
            )
            with self._errors():
                found = first_row(bound)
                hi = None if found is None else found[0]
                if hi is None:
                    return
                if to_spi is not None:
                    hi = to_spi(hi)
                literal = self._value_literal(hi, key)
            inside = [*conditions, f"{name} <= {literal}"]
            started = time.monotonic()
            yield make_slice(inside, hi if incremental else None)
            took = max(time.monotonic() - started, 1e-3)
            # Aim the next slice at SLICE_SECONDS, changing by at most 4x at a time.
            scaled = int(rows * SLICE_SECONDS / took)
            rows = max(plan.batch_rows, min(scaled, rows * 4, MAX_SLICE_ROWS), rows // 4)
            lower = f"{name} > {literal}"

    def prepare_target(self, plan: WritePlan) -> TableSchema:
        self._ensure_live()
        with self._errors():
            schema = self._describe_or_none(plan.table)
            if schema is None:
                if not plan.create_table:
                    raise TableNotFoundError(f"target table {plan.table!r} does not exist")
                self._execute(self._create_table_sql(plan))
                self._commit_ddl()
                schema = self._describe_or_none(plan.table)
                if schema is None:
                    raise TerminalConnectorError(f"table {plan.table!r} vanished after creation")
            wanted = plan.columns or (plan.source_schema.names if plan.source_schema else ())
            pick_columns(schema, (*wanted, *plan.key_columns))
            if plan.write_mode is WriteMode.TRUNCATE_INSERT:
                self._execute(self._truncate_sql(self.qualified(plan.table)))
        self._targets[plan.table] = schema
        return schema

    def load_position(self, key: str) -> str | None:
        self._ensure_live()
        table, task, at = self.q(POSITIONS_TABLE), self.q("task_id"), self.q("position")
        with self._errors():
            # Its own committed step, before any write: MySQL commits on DDL, and ending the
            # read below rolls back on PostgreSQL.
            try:
                self._execute(
                    f"CREATE TABLE IF NOT EXISTS {table} "
                    f"({task} VARCHAR(64) NOT NULL PRIMARY KEY, {at} TEXT)"
                )
                self._commit_ddl()
            except Exception as exc:
                if not self._created_concurrently(exc):
                    raise
                self.rollback()  # another run created it at the same moment: it is there now
            stream = self._open_stream(
                f"SELECT {at} FROM {table} WHERE {task} = {self._literal(key)}"
            )
            try:
                rows = stream.fetchmany(1)
            finally:
                stream.close(exhausted=False)
                self._end_read()
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def save_position(self, key: str, position: str) -> None:
        self._ensure_live()
        table, key_sql, names = self.q(POSITIONS_TABLE), self._literal(key), self.q("task_id")
        with self._errors():
            # Delete and insert: every dialect's statements, and one run of a task at a time.
            self._execute(f"DELETE FROM {table} WHERE {names} = {key_sql}")
            self._execute(
                f"INSERT INTO {table} ({names}, {self.q('position')}) "
                f"VALUES ({key_sql}, {self._literal(position)})"
            )

    def _create_table_sql(self, plan: WritePlan) -> str:
        source = plan.source_schema
        if source is None or not source.columns:
            raise TerminalConnectorError(
                f"target table {plan.table!r} does not exist and no source schema was given"
            )
        columns = source.columns
        if plan.columns is not None:
            columns = tuple(pick_columns(source, plan.columns))
        names = {c.name for c in columns}
        primary = source.primary_key if all(k in names for k in source.primary_key) else ()
        if not primary and plan.write_mode is WriteMode.UPSERT:
            primary = plan.key_columns  # upserts need a unique key to conflict on
        unique = (
            plan.key_columns
            if plan.write_mode is WriteMode.UPSERT and set(plan.key_columns) != set(primary)
            else ()
        )
        keyed = set(primary) | set(unique)
        parts = []
        for col in columns:
            not_null = "" if col.nullable and col.name not in primary else " NOT NULL"
            rendered = self._render_type(col, in_key=col.name in keyed)
            constraint = self._column_constraint(col)
            parts.append(f"{self.q(col.name)} {rendered}{not_null}{constraint}")
        if primary:
            parts.append(f"PRIMARY KEY ({', '.join(map(self.q, primary))})")
        if unique:
            parts.append(f"UNIQUE ({', '.join(map(self.q, unique))})")
        body = ",\n  ".join(parts)
        return f"CREATE TABLE {self.qualified(plan.table)} (\n  {body}\n){self._create_suffix()}"

    def write(self, batch: Batch, plan: WritePlan) -> WriteResult:
        self._ensure_live()
        target = self._targets.get(plan.table)
        if target is None:
            target = self._targets[plan.table] = self.describe(plan.table)
        names = plan.columns or batch.columns
        if len(names) != len(batch.columns):
            raise TerminalConnectorError(
                f"{len(names)} target columns for a batch of {len(batch.columns)} columns"
            )
        columns = pick_columns(target, names)
        good = self._convert_columns(columns, batch.rows)
        origin: Sequence[int] = range(len(batch.rows))
        rejected: list[tuple[int, str]] = []
        if good is None:  # some value failed: convert row by row to reject just its row
            good, origin, rejected = self._convert_rows(columns, batch.rows)

        def attempt(rows: list[Row]) -> None:
            with self._savepoint():
                self._bulk_write(plan.table, columns, rows, plan)

        def row_error(exc: Exception) -> str | None:
            # The driver's own refusal, before the server: split the batch as for a bad row.
            if isinstance(exc, UnicodeEncodeError):
                return unencodable_text(exc)
            reason = self._row_error(exc)
            return None if reason is None else self._redact(reason)

        with self._errors():
            written, refused = write_isolating_rejects(good, attempt, row_error)
        rejected.extend((origin[i], reason) for i, reason in refused)
        rejected.sort(key=lambda item: item[0])
        return WriteResult(written, [RejectedRow(batch.rows[i], reason) for i, reason in rejected])

    def _convert_columns(self, columns: Sequence[Column], rows: Sequence[Row]) -> list[Row] | None:
        """`rows` converted for the driver a column at a time, or None if any value failed.

        None sends the batch to `_convert_rows`, the reference, which finds the failing rows
        and their reasons; so any exception here means "take the slow path", never a result.
        """
        active = [
            (i, column_converter(convert, self._write_unchanged(c)))
            for i, c in enumerate(columns)
            if (convert := self._write_converter(c)) is not None
        ]
        if not active or not rows:
            return list(rows)
        if set(map(len, rows)) != {len(columns)}:
            return None  # rows of another width: the row path fails on them as it always did
        changed: dict[int, list[Any]] = {}
        try:
            for i, convert in active:
                out = convert(list(map(itemgetter(i), rows)))
                if out is not None:
                    changed[i] = out
        except Exception:
            return None
        if not changed:
            return list(rows)  # the common case: the rows go to the driver as they are
        values: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for i, out in changed.items():
            values[i] = out
        return list(zip(*values, strict=True))

    def _convert_rows(
        self, columns: Sequence[Column], rows: Sequence[Row]
    ) -> tuple[list[Row], list[int], list[tuple[int, str]]]:
        """`rows` converted one by one: the good ones, the index of each in `rows`, and the index
        and reason of each refused one."""
        convert = row_converter([self._write_converter(c) for c in columns])
        rejected: list[tuple[int, str]] = []
        good: list[Row] = []
        origin: list[int] = []
        for index, row in enumerate(rows):
            try:
                good.append(convert(row) if convert is not None else row)
            except (ValueError, TypeError, ArithmeticError) as exc:
                rejected.append((index, self._value_reason(columns, row, exc)))
            else:
                origin.append(index)
        return good, origin, rejected

    def _value_reason(self, columns: Sequence[Column], row: Row, exc: Exception) -> str:
        # Name the column whose value failed, found by converting the values one at a time.
        for col, value in zip(columns, row, strict=True):
            func = self._write_converter(col)
            if func is None or value is None:
                continue
            try:
                func(value)
            except (ValueError, TypeError, ArithmeticError) as err:
                return self._redact(f"column {col.name!r}: {err}")
        return self._redact(str(exc))


def pick_columns(schema: TableSchema, names: Sequence[str]) -> list[Column]:
    """The columns called `names`, or TerminalConnectorError naming those that do not exist."""
    by_name = {c.name: c for c in schema.columns}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise TerminalConnectorError(
            f"table {schema.name!r} has no column {', '.join(map(repr, missing))}"
        )
    return [by_name[n] for n in names]
