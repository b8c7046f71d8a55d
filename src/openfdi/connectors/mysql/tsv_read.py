"""MySQL/MariaDB as a source of the text pass-through (layer: connectors).

The server formats each row as one line of `_tsv`'s text: `CONCAT_WS` of the columns, each
escaped (text, as UTF-8 bytes) or spelled (booleans as 0/1) by SQL expressions, NULL as `\\N`,
cast to binary so the driver hands back the line's bytes as they are. A row is then one Python
object (a 1-tuple of bytes) instead of a decoded value per column; lines are joined into chunks
of about `CHUNK_BYTES` for the target's bulk load. Every other value's text is the one the row
path parses (the server's text protocol spells it the same), in a UTC session.

Slices are key or incremental ranges (`SqlConnector._range_slices`), read on the connector's
asyncmy connection, ahead of the consumer by its prefetch thread. That one connection runs
every statement of the pass-through (range queries, slices, and their `batches()` fallback)
inside one `START TRANSACTION WITH CONSISTENT SNAPSHOT`, so they all see the same rows.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import asyncmy.cursors

from openfdi.connectors._sql import split_qualified
from openfdi.connectors._sqlbase import Stream, pick_columns
from openfdi.connectors.errors import SliceRefusedError, TransientConnectorError
from openfdi.connectors.mysql.reader import AsyncReader
from openfdi.connectors.spi import Batch, Column, LogicalType, RawSlice, ReadPlan, Row

if TYPE_CHECKING:
    from openfdi.connectors.mysql.connector import MysqlConnector

__all__ = ["CHUNK_BYTES", "charsets", "line_expression", "read_raw"]

# Bytes per chunk handed to the target's bulk load.
CHUNK_BYTES = 1 << 20
# fetchmany() then hands over each read-ahead chunk whole, without slicing it.
_WHOLE = sys.maxsize
# SQL literals (the session keeps backslash escapes: see INIT_COMMAND's sql_mode).
_TAB = "'\\t'"
_NULL = "'\\\\N'"
# Backslash first, so the backslashes the later replacements add are not doubled.
_ESCAPES = (
    ("'\\\\'", "'\\\\\\\\'"),
    ("'\\t'", "'\\\\t'"),
    ("'\\n'", "'\\\\n'"),
    ("'\\r'", "'\\\\r'"),
)
_TEXT = frozenset({LogicalType.TEXT, LogicalType.VARCHAR})
# Character sets whose bytes are already UTF-8. Text in them is escaped and joined as bytes:
# CONVERT(... USING utf8mb4) would more than double the server's work per row.
_UTF8 = frozenset({"utf8mb4", "utf8mb3", "utf8", "ascii"})
_CHARSETS_SQL = """
SELECT COLUMN_NAME, CHARACTER_SET_NAME
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s
"""


def charsets(owner: MysqlConnector, table: str) -> dict[str, str | None]:
    """The character set of each of `table`'s columns (None for non-text columns)."""
    schema, name = split_qualified(table)
    with owner._errors():
        return {column: charset for column, charset in owner._query(_CHARSETS_SQL, (schema, name))}


def field_expression(owner: MysqlConnector, column: Column, charset: str | None) -> str:
    """A column as `_tsv` spells it, never NULL (CONCAT_WS would skip a NULL, shifting fields)."""
    expression = owner._select_expression(column)
    if column.type in _TEXT:
        # (A column read through CAST(... AS CHAR) is in the session's utf8mb4 already.)
        if charset not in _UTF8 and expression == owner.q(column.name):
            expression = f"CONVERT({expression} USING utf8mb4)"
        # As bytes: no collation to clash with another column's, and the escaped characters
        # are single bytes that UTF-8 never uses inside a multi-byte character.
        expression = f"CAST({expression} AS BINARY)"
        for plain, escaped in _ESCAPES:
            expression = f"REPLACE({expression}, {plain}, {escaped})"
    elif column.type is LogicalType.BOOLEAN:
        expression = f"({expression} <> 0)"  # any non-zero TINYINT(1) is true, as bool(v) says
    return f"IFNULL({expression}, {_NULL})"


def line_expression(
    owner: MysqlConnector, columns: Sequence[Column], charset: Mapping[str, str | None]
) -> str:
    """The row as one `_tsv` line (without its newline), in bytes; `charset` by column name."""
    fields = ", ".join(field_expression(owner, c, charset.get(c.name)) for c in columns)
    return f"CAST(CONCAT_WS({_TAB}, {fields}) AS BINARY)"


class _Snapshot:
    """The read transaction every statement of one pass-through runs in."""

    def __init__(self, owner: MysqlConnector) -> None:
        self._owner = owner
        with owner._errors():
            reader = owner._read_connection()
            # The server's default level may be weaker; InnoDB's snapshot needs this one.
            reader.run(reader.conn.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            reader.run(reader.conn.query("START TRANSACTION WITH CONSISTENT SNAPSHOT"))
        self._reader = reader

    def check(self) -> AsyncReader:
        """The snapshot's connection; TransientConnectorError if it was dropped (a slice's query
        was abandoned), since a new connection would see other rows."""
        reader = self._reader
        if self._owner._reader is not reader or not reader.is_usable:
            raise TransientConnectorError("MySQL: the pass-through read lost its snapshot")
        return reader

    def first_row(self, sql: str) -> Row | None:
        reader = self.check()
        return reader.run(_first_row(reader, sql))  # type: ignore[no-any-return]


async def _first_row(reader: AsyncReader, sql: str) -> Row | None:
    cursor = reader.conn.cursor(asyncmy.cursors.Cursor)
    try:
        await cursor.execute(sql)
        return await cursor.fetchone()  # type: ignore[no-any-return]
    finally:
        await cursor.close()


class TsvSlice(RawSlice):
    """One key range of a pass-through read, as `_tsv` lines the server formats."""

    def __init__(
        self,
        owner: MysqlConnector,
        snapshot: _Snapshot,
        plan: ReadPlan,
        form: tuple[str, ...],
        sql: str,
        conditions: Sequence[str],
        position: Any,
    ) -> None:
        self._owner = owner
        self._snapshot = snapshot
        self._plan = plan
        self.form = form
        self._sql = sql
        self._conditions = tuple(conditions)
        self.position = position
        self.nbytes = 0

    def chunks(self) -> Generator[bytes, None, None]:
        owner = self._owner
        owner._ensure_live()
        with owner._errors():
            self._snapshot.check()
            stream = owner._open_stream(self._sql)
        try:
            with owner._errors():
                yield from self._chunks_of(stream.fetchmany)
                owner._ensure_live()  # a KILL can land after the last row
        except (GeneratorExit, SliceRefusedError):
            self._abandon(stream)
            raise
        except BaseException:
            stream.close(exhausted=False)
            raise
        stream.close(exhausted=True)

    def _chunks_of(self, fetch: Callable[[int], Sequence[Row]]) -> Generator[bytes, None, None]:
        owner = self._owner
        lines: list[bytes] = []
        size = 0
        while rows := fetch(_WHOLE):
            batch = [row[0] for row in rows]
            try:
                size += sum(map(len, batch)) + len(batch)  # each line and its newline
            except TypeError:
                _too_long()
            lines += batch
            if size >= CHUNK_BYTES:
                yield self._joined(lines)
                lines, size = [], 0
                owner._ensure_live()
        if lines:
            yield self._joined(lines)

    def _joined(self, lines: list[bytes]) -> bytes:
        lines.append(b"")  # the last row's newline
        chunk = b"\n".join(lines)
        self.nbytes += len(chunk)
        return chunk

    def _abandon(self, stream: Stream) -> None:
        """Leave the stream so that the snapshot stays usable for `batches()`: read the rest of
        the slice (bounded, and cheaper than writing it), unless the connector was cancelled."""
        if not self._owner._cancelled.is_set():
            with contextlib.suppress(Exception):
                while stream.fetchmany(_WHOLE):
                    pass
                stream.close(exhausted=True)
                return
        stream.close(exhausted=False)

    def batches(self) -> Generator[Batch, None, None]:
        with self._owner._errors():
            self._snapshot.check()
        yield from self._owner._read_batches(self._plan, self._conditions, end_read=False)


def read_raw(
    owner: MysqlConnector, plan: ReadPlan, form: tuple[str, ...]
) -> Generator[RawSlice, None, None]:
    """`MysqlConnector.read_raw` for the `_tsv` form."""
    schema = owner.describe(plan.table)
    columns = pick_columns(schema, plan.columns or schema.names)
    order = ""
    if plan.incremental_column:
        incremental = pick_columns(schema, (plan.incremental_column,))[0]
        # Upserts keep the last of equal keys: keep read order.
        order = f" ORDER BY {owner.q(incremental.name)}"
    line = line_expression(owner, columns, charsets(owner, plan.table))
    select = f"SELECT {line} FROM {owner.qualified(plan.table)}"
    with owner._errors():
        owner._read_connection()  # replaces a dead one, which has nothing to roll back
        owner._end_read()
    try:
        snapshot = _Snapshot(owner)

        def make_slice(conditions: list[str], position: Any) -> RawSlice:
            where = " WHERE " + " AND ".join(conditions) if conditions else ""
            sql = select + where + order
            return TsvSlice(owner, snapshot, plan, form, sql, conditions, position)

        yield from owner._range_slices(plan, schema, snapshot.first_row, make_slice)
    finally:
        _release(owner)


def _too_long() -> NoReturn:
    # CONCAT_WS gives NULL for a line longer than the server's max_allowed_packet.
    raise SliceRefusedError("MySQL: a row is too long to pass through as text")


def _release(owner: MysqlConnector) -> None:
    """End the snapshot; a slice left mid-stream (never closed) takes its connection along."""
    left = owner._prefetching
    if left is not None:
        owner._prefetching = None
        left.close(exhausted=False)
        with contextlib.suppress(Exception):
            owner._drop_reader()
    with contextlib.suppress(Exception):
        owner._end_read()
