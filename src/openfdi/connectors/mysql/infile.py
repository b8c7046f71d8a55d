"""`LOAD DATA LOCAL INFILE` fed from memory (layer: connectors), on PyMySQL.

Rows are encoded as the tab-separated text LOAD DATA reads by default (`\\N` for NULL, backslash
escapes) and streamed to the server in packets while the next rows are encoded, so encoding
overlaps the server's work. They are encoded a chunk of about `CHUNK_BYTES` at a time, and each
chunk is sent as it is: the payload never exists whole, and the encoder's intermediate strings
(one character outside Latin-1 widens a whole chunk's text to 2 or 4 bytes a character) stay
small, at no cost in speed.

No file is involved: the server asks the client for "the file" named in the statement, and
`InfileConnection` answers only for the random name it registered for the statement it is
running, with those bytes; a request for any other name (a hostile server may ask for /etc/passwd
in reply to any query) gets an empty file. Binary columns travel as hex, decoded by `UNHEX()` in
the statement's SET clause.

With LOCAL, the server cannot stop the client mid-file, so it downgrades every refused value
(and duplicate key) to a warning and skips or truncates the row. `refusal()` turns such warnings
back into the error a strict INSERT would have raised, so the caller undoes the statement and
isolates the refused rows as before.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any

import pymysql  # type: ignore[import-untyped]
import pymysql.connections  # type: ignore[import-untyped]
import pymysql.converters  # type: ignore[import-untyped]
from pymysql.constants import CR  # type: ignore[import-untyped]
from pymysql.protocol import LoadLocalPacketWrapper  # type: ignore[import-untyped]

from openfdi.connectors.spi import Row

__all__ = ["InfileConnection", "encode_rows", "load_data_sql", "refusal"]

CHUNK_BYTES = 64 << 10  # encoded bytes per chunk, about (sized on the previous chunk's rows)
FIRST_CHUNK_ROWS = 16  # before any row size is known: rows may be megabytes each
MAX_CHUNK_ROWS = 1_000
SEND_BYTES = 32 << 10  # smaller chunks (narrow rows, the last one) are joined up to this
PACKET_BYTES = 1 << 20  # well under any max_allowed_packet (MySQL's default is 64 MiB)

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
NULL = "\\N"


def _text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value or "\0" in value:
        return value.translate(_ESCAPES)
    return value


def _datetime(value: datetime) -> str:
    # Like PyMySQL's quoting: an offset is dropped (TIMESTAMP values arrive as UTC wall time).
    return value.replace(tzinfo=None).isoformat(" ")


def _time(value: time) -> str:
    return value.replace(tzinfo=None).isoformat()


def _timedelta(value: timedelta) -> str:
    quoted: str = pymysql.converters.escape_timedelta(value)
    return quoted.strip("'")


def _bytes_as_text(value: bytes | bytearray | memoryview) -> str:
    # Raw bytes into a text column: kept byte for byte (surrogateescape undoes this on encoding),
    # so the server, not the encoder, refuses what is not valid in the column's character set.
    return _text(bytes(value).decode("utf-8", "surrogateescape"))


_ENCODERS: dict[type, Callable[[Any], str]] = {
    str: _text,
    int: int.__repr__,
    bool: lambda v: "1" if v else "0",
    float: float.__repr__,
    Decimal: Decimal.__str__,
    datetime: _datetime,
    date: date.isoformat,
    time: _time,
    timedelta: _timedelta,
    bytes: _bytes_as_text,
    bytearray: _bytes_as_text,
    memoryview: _bytes_as_text,
}


def _value(value: Any) -> str:
    if value is None:
        return NULL
    encode = _ENCODERS.get(type(value))
    if encode is None:
        return _text(str(value))
    return encode(value)


def _hex(value: Any) -> str:
    """A value for a binary column, as the hex digits UNHEX() turns back into its bytes."""
    if value is None:
        return NULL
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    text = value if isinstance(value, str) else _value(value)
    return text.encode("utf-8", "surrogateescape").hex()


def encode_rows(rows: Sequence[Row], binary: Sequence[int] = ()) -> Iterator[bytes]:
    """The rows as LOAD DATA text (UTF-8), in chunks of about `CHUNK_BYTES`.

    Args:
        rows: The values, already converted for MySQL (naive UTC datetimes, finite floats).
        binary: Indexes of the fields that go to binary columns (sent as hex).
    """
    start, count = 0, FIRST_CHUNK_ROWS
    while start < len(rows):
        chunk = rows[start : start + count]
        start += len(chunk)
        columns = [
            [_hex(v) for v in values] if i in binary else _column(values)
            for i, values in enumerate(zip(*chunk, strict=True))
        ]
        lines = list(map("\t".join, zip(*columns, strict=True)))
        del columns
        lines.append("")
        data = "\n".join(lines).encode("utf-8", "surrogateescape")
        del lines
        count = max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES * len(chunk) // len(data)))
        del chunk
        yield data


# Types whose str() is already their LOAD DATA text (naive datetimes and times only).
_STR_IS_TEXT = frozenset({int, float, Decimal, date})
_STR_IF_NAIVE = frozenset({datetime, time})


def _column(values: Sequence[Any]) -> list[str]:
    """One column's values as text. Columns of one type take a path with no Python-level call
    per value (several times faster than `_value` on each); mixed ones go value by value."""
    kinds = set(map(type, values))
    has_null = type(None) in kinds
    kinds.discard(type(None))
    if len(kinds) != 1:
        return list(map(_value, values))
    kind = kinds.pop()
    present = [v for v in values if v is not None] if has_null else values
    if kind is str:
        joined = "".join(present)
        if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined or "\0" in joined:
            return list(map(_value, values))
        return [NULL if v is None else v for v in values] if has_null else list(values)
    if kind is bool:
        return [NULL if v is None else "1" if v else "0" for v in values]
    if kind in _STR_IF_NAIVE and any(map(_tzinfo, present)):
        return list(map(_value, values))
    if kind in _STR_IS_TEXT or kind in _STR_IF_NAIVE:
        if has_null:
            return list(map(str, [NULL if v is None else v for v in values]))  # str(NULL) is NULL
        return list(map(str, values))
    return list(map(_value, values))


_tzinfo = attrgetter("tzinfo")


def load_data_sql(
    name: str, qualified_table: str, quoted_columns: Sequence[str], binary: Sequence[int] = ()
) -> str:
    """The LOAD DATA statement reading the in-memory file `name` (see `InfileConnection`)."""
    targets = []
    sets = []
    for i, column in enumerate(quoted_columns):
        if i in binary:
            targets.append(f"@openfdi_{i}")
            sets.append(f"{column} = UNHEX(@openfdi_{i})")
        else:
            targets.append(column)
    sql = (
        f"LOAD DATA LOCAL INFILE '{name}' INTO TABLE {qualified_table} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
        f"({', '.join(targets)})"
    )
    if sets:
        sql += " SET " + ", ".join(sets)
    return sql


class _Result(pymysql.connections.MySQLResult):  # type: ignore[misc]
    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn: InfileConnection = self.connection
        wanted = LoadLocalPacketWrapper(first_packet).filename
        chunks = conn.take_infile(wanted)
        try:
            if chunks is not None:
                _send(conn, chunks)
        finally:
            conn.write_packet(b"")  # end of file
            ok_packet = conn._read_packet()  # raises the server's error, if it sent one
        if not ok_packet.is_ok_packet():
            raise pymysql.err.OperationalError(CR.CR_COMMANDS_OUT_OF_SYNC, "Commands Out of Sync")
        self._read_ok_packet(ok_packet)


def _send(conn: InfileConnection, chunks: Iterable[bytes]) -> None:
    """Each chunk as it comes (small ones joined up to `SEND_BYTES`), in packets of at most
    `PACKET_BYTES`; any size below that is a valid piece of the file."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        del chunk
        if size >= SEND_BYTES:
            _write(conn, b"".join(pending))  # a single chunk is not copied
            pending.clear()
            size = 0
    if size:
        _write(conn, b"".join(pending))


def _write(conn: InfileConnection, data: bytes) -> None:
    if len(data) <= PACKET_BYTES:
        conn.write_packet(data)
        return
    view = memoryview(data)
    for at in range(0, len(data), PACKET_BYTES):
        conn.write_packet(view[at : at + PACKET_BYTES])


class InfileConnection(pymysql.connections.Connection):  # type: ignore[misc]
    """A PyMySQL connection whose LOAD DATA LOCAL reads registered bytes, never local files."""

    _infile: tuple[bytes, Iterable[bytes]] | None = None

    def load(self, sql_for: Callable[[str], str], chunks: Iterable[bytes]) -> tuple[int, int]:
        """Run the LOAD DATA statement `sql_for(name)`, its file being `chunks`.

        Returns:
            The rows it loaded and the number of warnings it raised.
        """
        name = f"openfdi-{secrets.token_hex(8)}.tsv"
        self._infile = (name.encode(), chunks)
        try:
            with self.cursor() as cursor:
                loaded = cursor.execute(sql_for(name))
                return int(loaded), int(cursor.warning_count)
        finally:
            self._infile = None

    def take_infile(self, name: bytes) -> Iterable[bytes] | None:
        registered, self._infile = self._infile, None
        if registered is None or registered[0] != name:
            return None
        return registered[1]

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own, with the result class that serves LOCAL INFILE from memory.
        self._result = None
        result = _Result(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        affected: int = result.affected_rows
        return affected


def refusal(conn: InfileConnection) -> Exception:
    """The error a strict INSERT would have raised for the last statement's warnings, if any.

    Notes are not refusals (the session has `sql_notes = 0`, so they are not even counted).
    """
    with conn.cursor() as cursor:
        cursor.execute("SHOW WARNINGS LIMIT 1")
        found = cursor.fetchall()
    code, message = 1265, "the server refused a row without saying why"
    for level, found_code, found_message in found:
        if str(level).lower() != "note":
            code, message = int(found_code), str(found_message)
    error: Exception = pymysql.err.DataError(code, message)
    return error
