"""openfdi's own decoder of a MySQL/MariaDB binary log as a replica receives it: one event's
bytes in, the changes and commits of interest out (`BinlogDecoder.feed`). No I/O: the
connection is `my_source.BinlogStream`'s.

Why not python-mysql-replication's parser: it builds an object per event and per column and
reads every field through a packet wrapper, 140 µs a single-row UPDATE transaction (four
events) on this machine, which bounded a composite task's catch-up at 7,000-9,000 changes/s
(py-spy: 80% of the reader process inside the library; `bench/cdc.py --source mariadb`). Here
a table map is decoded once per shape (its bytes are the cache key) into one reader function
per column, and a row is a loop over those readers on the event's bytes.

What it decodes: the format description (checksum, post-header lengths), rotate, MariaDB
GTID, XID and COMMIT (a transaction's end), TRUNCATE (logged as a statement), table maps with
their optional metadata (`binlog_row_metadata=FULL`: names, signedness, charsets, ENUM and SET
members) and rows events v1 (MariaDB) and v2 (MySQL) with full images. It refuses, naming the
setting, what it cannot read exactly: compressed or encrypted logs, partial JSON updates,
minimal row images, a table map without column names, a column type it does not know.

Values come in the forms `my_values`' converters take (the snapshot's forms where they can:
BIT as bytes, SET as its members' text, a zero date as None); docs/cdc.md "Values".
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
import struct
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pymysqlreplication.constants.CHARSET import charset_by_id  # type: ignore[import-untyped]
from pymysqlreplication.json_binary import parse_json  # type: ignore[import-untyped]

from openfdi.connectors.errors import TerminalConnectorError
from openfdi.domain.cdc import TableName

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

# --- what the decoder gives ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowChange:
    kind: str
    table: TableName
    columns: tuple[str, ...]
    """The event's column names (the table's shape when the change was logged)."""
    new: tuple[Any, ...] | None
    old: tuple[Any, ...] | None


@dataclass(frozen=True, slots=True)
class Gtid:
    """A MariaDB GTID, domain-server-sequence. A server's binlog holds each domain's
    transactions in sequence order, so the last applied GTID of each domain (its
    `gtid_slave_pos`) says where to resume in whatever file the server keeps them now."""

    domain: int
    server: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"


@dataclass(frozen=True, slots=True)
class TxnCommit:
    position: int
    """After the commit event: where the next transaction starts."""
    commit_time_us: int
    gtid: Gtid | None = None
    """The transaction's MariaDB GTID, when the server logs them (MariaDB 10.0+ always)."""


Item = RowChange | TxnCommit


def encode_position(log_file: str, offset: int) -> int:
    """A binlog file and offset as one integer, `(file number << 32) | offset`, which orders
    positions in log order (a binlog file holds at most 4 GiB)."""
    return (int(log_file.rsplit(".", 1)[1]) << 32) | offset


# --- the wire's constants ------------------------------------------------------------------------

QUERY, ROTATE, FORMAT_DESCRIPTION, XID, TABLE_MAP = 2, 4, 15, 16, 19
WRITE_V1, UPDATE_V1, DELETE_V1, WRITE_V2, UPDATE_V2, DELETE_V2 = 23, 24, 25, 30, 31, 32
PARTIAL_UPDATE_ROWS, MARIADB_GTID, MARIADB_START_ENCRYPTION = 39, 162, 164
MARIADB_COMPRESSED = frozenset(range(165, 172))
"""Compressed query and rows events (log_bin_compress=ON)."""
ROWS_KIND = {
    WRITE_V1: "INSERT", WRITE_V2: "INSERT", UPDATE_V1: "UPDATE", UPDATE_V2: "UPDATE",
    DELETE_V1: "DELETE", DELETE_V2: "DELETE",
}  # fmt: skip
HEADER = struct.Struct("<IBIIIH")
"""The common header: timestamp, type, server id, event size, next position, flags."""
HEADER_LEN = HEADER.size
CHECKSUM_LEN = 4
_DEFAULT_POST_HEADER = {QUERY: 13, ROTATE: 8, TABLE_MAP: 8, MARIADB_GTID: 19}
_DEFAULT_POST_HEADER.update({t: 8 for t in (WRITE_V1, UPDATE_V1, DELETE_V1)})
_DEFAULT_POST_HEADER.update({t: 10 for t in (WRITE_V2, UPDATE_V2, DELETE_V2)})
_FDE_FIXED = 2 + 50 + 4 + 1
"""A format description's fields before its post-header lengths."""

# Column types (include/field_types.h)
DECIMAL, TINY, SHORT, LONG, FLOAT, DOUBLE, NULL, TIMESTAMP, LONGLONG, INT24 = range(10)
DATE, TIME, DATETIME, YEAR, NEWDATE, VARCHAR, BIT, TIMESTAMP2, DATETIME2, TIME2 = range(10, 20)
JSON, NEWDECIMAL, ENUM, SET = 245, 246, 247, 248
TINY_BLOB, MEDIUM_BLOB, LONG_BLOB, BLOB, VAR_STRING, STRING, GEOMETRY = range(249, 256)
BINARY_COLLATION = 63
_NUMERIC = frozenset({TINY, SHORT, INT24, LONG, LONGLONG, NEWDECIMAL, FLOAT, DOUBLE, YEAR})
"""The columns the SIGNEDNESS metadata has a bit for (YEAR included: MariaDB counts it)."""
_CHARACTER = frozenset({STRING, VAR_STRING, VARCHAR, BLOB})
"""The columns the charset metadata has an entry for (ENUM and SET have their own; MariaDB
also gives GEOMETRY one)."""

_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_U8, _I8, _I16 = struct.Struct("<B"), struct.Struct("<b"), struct.Struct("<h")
_I32, _I64 = struct.Struct("<i"), struct.Struct("<q")
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")
_GTID = struct.Struct("<QIB")


def lenenc(buf: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer at `pos`: (value, the position after it)."""
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return _U16.unpack_from(buf, pos + 1)[0], pos + 3
    if first == 0xFD:
        return int.from_bytes(buf[pos + 1 : pos + 4], "little"), pos + 4
    return _U64.unpack_from(buf, pos + 1)[0], pos + 9


# --- one column's value --------------------------------------------------------------------------

Reader = Callable[[bytes, int], tuple[Any, int]]
"""Reads one column's value at a position of a row image: (value, the position after it)."""


def _fixed(unpack: Callable[[bytes, int], tuple[Any, ...]], size: int) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        return unpack(buf, pos)[0], pos + size

    return read


def _int24(signed: bool) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        return int.from_bytes(buf[pos : pos + 3], "little", signed=signed), pos + 3

    return read


def _year(buf: bytes, pos: int) -> tuple[Any, int]:
    stored = buf[pos]
    return (stored + 1900 if stored else 0), pos + 1


def _length_prefixed(size: int, encoding: str | None) -> Reader:
    """A value after its length in `size` bytes: bytes, or text in the column's encoding."""

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        start = pos + size
        end = start + int.from_bytes(buf[pos:start], "little")
        raw = buf[start:end]
        return (raw.decode(encoding) if encoding is not None else raw), end

    return read


def _short_text(encoding: str | None) -> Reader:
    """A value after a one-byte length (the common VARCHAR and CHAR), the fast case of
    `_length_prefixed`."""
    if encoding is None:

        def read_bytes(buf: bytes, pos: int) -> tuple[Any, int]:
            end = pos + 1 + buf[pos]
            return buf[pos + 1 : end], end

        return read_bytes

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end = pos + 1 + buf[pos]
        return buf[pos + 1 : end].decode(encoding), end

    return read


def _json(size: int) -> Reader:
    """MySQL's binary JSON (MariaDB's JSON is text, a BLOB): python-mysql-replication's parser
    of that format; its parse is what the appliers write as JSON text."""

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        start = pos + size
        end = start + int.from_bytes(buf[pos:start], "little")
        if end == start:
            return None, end
        value = parse_json(buf[start], buf[start + 1 : end])
        return (value.decode("utf-8") if isinstance(value, bytes) else value), end

    return read


def _enum(size: int, members: list[str]) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        index = int.from_bytes(buf[pos : pos + size], "little")
        return (members[index - 1] if 0 < index <= len(members) else ""), pos + size

    return read


def _set(size: int, members: list[str]) -> Reader:
    """The members as the server prints them: in definition order, comma-separated ('' for
    the empty set, apart from NULL)."""

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        mask = int.from_bytes(buf[pos : pos + size], "little")
        return ",".join(m for i, m in enumerate(members) if mask >> i & 1), pos + size

    return read


def _bit(size: int) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        return buf[pos : pos + size], pos + size

    return read


_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def _decimal(precision: int, scale: int) -> Reader:
    """DECIMAL(precision, scale) in MySQL's binary form: base-10⁹ groups of 4 bytes, big-endian,
    a shorter group for the digits left over at each end; the top bit set for a value ≥ 0,
    every bit inverted for one < 0. Kept as its digits (Decimal('1.50'), not 1.5)."""
    whole, fraction = divmod(precision - scale, 9), divmod(scale, 9)
    lead = _DIG2BYTES[whole[1]]
    tail = _DIG2BYTES[fraction[1]]
    size = lead + whole[0] * 4 + fraction[0] * 4 + tail
    mask = (1 << (size * 8)) - 1
    top = 1 << (size * 8 - 1)
    groups = [(lead, 0)] if lead else []
    groups += [(4, 9)] * whole[0]
    frac_groups = [(4, 9)] * fraction[0] + ([(tail, fraction[1])] if tail else [])

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        stored = int.from_bytes(buf[pos:end], "big")
        negative = not stored & top
        raw = ((stored ^ mask) if negative else stored) ^ top
        digits = raw.to_bytes(size, "big")
        at = 0
        text = []
        for width, pad in groups:
            text.append(f"{int.from_bytes(digits[at : at + width], 'big'):0{pad}d}")
            at += width
        out = "".join(text).lstrip("0") or "0"
        if frac_groups:
            parts = []
            for width, pad in frac_groups:
                parts.append(f"{int.from_bytes(digits[at : at + width], 'big'):0{pad}d}")
                at += width
            out = f"{out}.{''.join(parts)}"
        return Decimal(f"-{out}" if negative else out), end

    return read


def _fraction(fsp: int) -> tuple[int, int]:
    """The bytes of a fractional second of precision `fsp`, and the factor to microseconds."""
    width = (fsp + 1) // 2
    return width, (1, 10_000, 100, 1)[width]


def _date(buf: bytes, pos: int) -> tuple[Any, int]:
    stored = int.from_bytes(buf[pos : pos + 3], "little")
    try:
        return dt.date(stored >> 9, (stored >> 5) & 15, stored & 31), pos + 3
    except ValueError:  # a zero or partial date: no value in Python or PostgreSQL
        return None, pos + 3


def _datetime2(fsp: int) -> Reader:
    """DATETIME(fsp): 5 bytes big-endian (offset by 2³⁹: year*13+month, day, hour, minute,
    second), then the fraction."""
    width, factor = _fraction(fsp)
    size = 5 + width

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        packed = int.from_bytes(buf[pos : pos + 5], "big") - 0x80_0000_0000
        micro = int.from_bytes(buf[pos + 5 : end], "big") * factor if width else 0
        ymd, hms = packed >> 17, packed & 0x1FFFF
        try:
            value = dt.datetime(
                (ymd >> 5) // 13, (ymd >> 5) % 13, ymd & 31,
                hms >> 12, (hms >> 6) & 63, hms & 63, micro,
            )  # fmt: skip
        except ValueError:  # a zero or partial date
            return None, end
        return value, end

    return read


_EPOCH = dt.datetime(1970, 1, 1)


def _timestamp2(fsp: int) -> Reader:
    """TIMESTAMP(fsp): seconds since the epoch (UTC), 4 bytes big-endian, then the fraction;
    0 is the zero timestamp (a TIMESTAMP's range begins at 00:00:01)."""
    width, factor = _fraction(fsp)
    size = 4 + width

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        seconds = int.from_bytes(buf[pos : pos + 4], "big")
        if not seconds:
            return None, end
        micro = int.from_bytes(buf[pos + 4 : end], "big") * factor if width else 0
        return _EPOCH + dt.timedelta(seconds=seconds, microseconds=micro), end

    return read


def _time2(fsp: int) -> Reader:
    """TIME(fsp): one big-endian integer of 3 bytes plus the fraction's, offset by its top
    bit, whose magnitude is hour (10 bits), minute (6), second (6) then the fraction. Negated
    as one integer: negating the whole seconds and the fraction apart is off by up to a
    second for a negative time with a fraction (python-mysql-replication's error: it read
    -12:34:56.000001 as -12:34:56.999999)."""
    width, factor = _fraction(fsp)
    size = 3 + width
    bias = 1 << (size * 8 - 1)
    frac_bits = width * 8

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        raw = int.from_bytes(buf[pos:end], "big") - bias
        magnitude = -raw if raw < 0 else raw
        whole = magnitude >> frac_bits
        value = dt.timedelta(
            hours=(whole >> 12) & 0x3FF,
            minutes=(whole >> 6) & 0x3F,
            seconds=whole & 0x3F,
            microseconds=(magnitude & ((1 << frac_bits) - 1)) * factor,
        )
        return (-value if raw < 0 else value), end

    return read


def _old_datetime(buf: bytes, pos: int) -> tuple[Any, int]:
    """DATETIME before MySQL 5.6's format: YYYYMMDDhhmmss as an 8-byte integer."""
    stored = _U64.unpack_from(buf, pos)[0]
    day, clock = divmod(stored, 1_000_000)
    try:
        value = dt.datetime(
            day // 10_000, day // 100 % 100, day % 100,
            clock // 10_000, clock // 100 % 100, clock % 100,
        )  # fmt: skip
    except ValueError:
        return None, pos + 8
    return value, pos + 8


def _old_time(buf: bytes, pos: int) -> tuple[Any, int]:
    """TIME before MySQL 5.6's format: ±HHMMSS as a 3-byte integer."""
    stored = int.from_bytes(buf[pos : pos + 3], "little", signed=True)
    magnitude = abs(stored)
    value = dt.timedelta(
        hours=magnitude // 10_000, minutes=magnitude // 100 % 100, seconds=magnitude % 100
    )
    return (-value if stored < 0 else value), pos + 3


def _old_timestamp(buf: bytes, pos: int) -> tuple[Any, int]:
    seconds = _U32.unpack_from(buf, pos)[0]
    return (_EPOCH + dt.timedelta(seconds=seconds) if seconds else None), pos + 4


def _nothing(buf: bytes, pos: int) -> tuple[Any, int]:
    return None, pos


_INTS = {
    (TINY, False): _fixed(_I8.unpack_from, 1), (TINY, True): _fixed(_U8.unpack_from, 1),
    (SHORT, False): _fixed(_I16.unpack_from, 2), (SHORT, True): _fixed(_U16.unpack_from, 2),
    (INT24, False): _int24(True), (INT24, True): _int24(False),
    (LONG, False): _fixed(_I32.unpack_from, 4), (LONG, True): _fixed(_U32.unpack_from, 4),
    (LONGLONG, False): _fixed(_I64.unpack_from, 8), (LONGLONG, True): _fixed(_U64.unpack_from, 8),
}  # fmt: skip


# --- a table map ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Column:
    type: int
    meta: int
    """The type's metadata as one integer (see `_column_meta`)."""
    unsigned: bool = False
    collation: int | None = None
    members: list[str] | None = None


@dataclass(frozen=True, slots=True)
class Table:
    """A table as one table map describes it: its name, its columns' names and one reader a
    column."""

    name: TableName
    columns: tuple[str, ...]
    readers: tuple[Reader, ...]


def _column_meta(kind: int, block: bytes, pos: int) -> tuple[int, int, int]:
    """One column's metadata in the table map's block: (real type, metadata, next pos).

    The metadata per type: a float's or double's size (1 byte); a blob's, JSON's or geometry's
    length bytes (1); a VARCHAR's maximum length (2, little-endian); a CHAR's real type and
    maximum length, packed in 2 big-endian bytes (ENUM and SET are CHARs whose real type says
    so, with their storage size); a decimal's precision and scale (2); a bit's bits (2); a
    temporal type's fractional precision (1)."""
    if kind in (FLOAT, DOUBLE, BLOB, GEOMETRY, JSON, TIMESTAMP2, DATETIME2, TIME2):
        return kind, block[pos], pos + 1
    if kind == VARCHAR:
        return kind, _U16.unpack_from(block, pos)[0], pos + 2
    if kind in (STRING, VAR_STRING):
        real, low = block[pos], block[pos + 1]
        if real in (ENUM, SET):
            return real, low, pos + 2
        # The top bits of a CHAR's maximum length (> 255 bytes) hide in its real type's byte.
        return STRING, (((real & 0x30) ^ 0x30) << 4) | low, pos + 2
    if kind == NEWDECIMAL:
        return kind, (block[pos] << 8) | block[pos + 1], pos + 2
    if kind == BIT:
        return kind, block[pos + 1] * 8 + block[pos], pos + 2
    if kind in (ENUM, SET):
        return kind, block[pos + 1], pos + 2
    return kind, 0, pos


def _names(buf: bytes, pos: int, end: int) -> list[str]:
    out = []
    while pos < end:
        size, pos = lenenc(buf, pos)
        out.append(buf[pos : pos + size].decode("utf-8"))
        pos += size
    return out


def _ints(buf: bytes, pos: int, end: int) -> list[int]:
    out = []
    while pos < end:
        value, pos = lenenc(buf, pos)
        out.append(value)
    return out


def _member_lists(buf: bytes, pos: int, end: int) -> list[list[str]]:
    out = []
    while pos < end:
        count, pos = lenenc(buf, pos)
        members = []
        for _ in range(count):
            size, pos = lenenc(buf, pos)
            members.append(buf[pos : pos + size].decode("utf-8", "replace"))
            pos += size
        out.append(members)
    return out


def _charsets(columns: list[_Column], which: list[int], value: bytes, default: bool) -> None:
    """Set the collations of `which` columns from a DEFAULT_CHARSET-kind field (a default,
    then (index, collation) pairs for the others) or a COLUMN_CHARSET-kind one (one each)."""
    found = _ints(value, 0, len(value))
    if default:
        given = dict(zip(found[1::2], found[2::2], strict=True))
        for n, i in enumerate(which):
            columns[i].collation = given.get(n, found[0])
    else:
        for n, i in enumerate(which):
            columns[i].collation = found[n]


class _Shape:
    """Decodes a table map's payload (after the table id and flags) into a `Table`."""

    def __init__(self, payload: bytes, mariadb: bool) -> None:
        self.payload = payload
        self.mariadb = mariadb

    def table(self) -> Table:
        buf = self.payload
        size = buf[0]
        schema = buf[1 : 1 + size].decode("utf-8")
        pos = 2 + size
        size = buf[pos]
        name = TableName(schema, buf[pos + 1 : pos + 1 + size].decode("utf-8"))
        pos += size + 2
        count, pos = lenenc(buf, pos)
        types = buf[pos : pos + count]
        pos += count
        meta_len, pos = lenenc(buf, pos)
        block, meta_end = buf, pos + meta_len
        columns: list[_Column] = []
        for kind in types:
            real, meta, pos = _column_meta(kind, block, pos)
            columns.append(_Column(real, meta))
        if pos != meta_end:
            raise TerminalConnectorError(
                f"the binlog's table map of {name} has metadata openfdi cannot read"
            )
        pos = meta_end + (count + 7) // 8  # past the nullability bitmap
        names = self._optional(columns, name, pos)
        if names is None or len(names) != count:
            raise TerminalConnectorError(
                f"the binlog's table map of {name} carries no column names: set "
                "binlog_row_metadata = FULL in the source server's configuration (docs/cdc.md)"
            )
        readers = tuple(self._reader(c, name, n) for c, n in zip(columns, names, strict=True))
        return Table(name, tuple(names), readers)

    def _optional(self, columns: list[_Column], name: TableName, pos: int) -> list[str] | None:
        """Read the optional metadata (TLV fields to the payload's end) into `columns`; the
        column names."""
        buf, end = self.payload, len(self.payload)
        names = None
        character = [
            i for i, c in enumerate(columns)
            if c.type in _CHARACTER or (c.type == GEOMETRY and self.mariadb)
        ]  # fmt: skip
        enum_set = [i for i, c in enumerate(columns) if c.type in (ENUM, SET)]
        while pos < end:
            field = buf[pos]
            size, pos = lenenc(buf, pos + 1)
            value, pos = buf[pos : pos + size], pos + size
            if field == 1:  # SIGNEDNESS: a bit per numeric column, the first the top bit
                numeric = [c for c in columns if c.type in _NUMERIC]
                for n, column in enumerate(numeric):
                    column.unsigned = bool(value[n // 8] & (0x80 >> (n % 8)))
            elif field in (2, 3):  # DEFAULT_CHARSET, COLUMN_CHARSET
                _charsets(columns, character, value, default=field == 2)
            elif field == 4:  # COLUMN_NAME
                names = _names(value, 0, len(value))
            elif field in (5, 6):  # SET_STR_VALUE, ENUM_STR_VALUE
                kind = SET if field == 5 else ENUM
                lists = iter(_member_lists(value, 0, len(value)))
                for column in columns:
                    if column.type == kind:
                        column.members = next(lists)
            elif field in (10, 11):  # ENUM_AND_SET_DEFAULT_CHARSET, _COLUMN_CHARSET
                _charsets(columns, enum_set, value, default=field == 10)
        return names

    def _reader(self, column: _Column, table: TableName, name: str) -> Reader:
        kind, meta = column.type, column.meta
        found = _INTS.get((kind, column.unsigned))
        if found is not None:
            return found
        if kind in (VARCHAR, STRING):
            encoding = self._encoding(column)
            return _short_text(encoding) if meta < 256 else _length_prefixed(2, encoding)
        if kind == BLOB:
            return _length_prefixed(meta, self._encoding(column))
        if kind == GEOMETRY:
            return _length_prefixed(meta, None)
        if kind == NEWDECIMAL:
            return _decimal(meta >> 8, meta & 0xFF)
        if kind in (ENUM, SET):
            if column.members is None:
                raise TerminalConnectorError(
                    f"the binlog's table map of {table} lists no members of column {name}: "
                    "set binlog_row_metadata = FULL (docs/cdc.md)"
                )
            return (_enum if kind == ENUM else _set)(meta, column.members)
        simple = _SIMPLE.get(kind)
        if simple is not None:
            return simple(meta)
        raise TerminalConnectorError(
            f"column {name} of {table} has a type openfdi cannot read from the binlog "
            f"(MySQL type code {kind})"
        )

    def _encoding(self, column: _Column) -> str | None:
        """The Python codec of a character column's collation, None for binary."""
        if column.collation is None or column.collation == BINARY_COLLATION:
            return None if column.collation == BINARY_COLLATION else "utf-8"
        found = charset_by_id(column.collation, "mariadb" if self.mariadb else "mysql")
        if found is None:
            return "utf-8"
        return MYSQL_LATIN1 if found.name == "latin1" else str(found.encoding)


MYSQL_LATIN1 = "openfdi_mysql_latin1"
"""MySQL's latin1: Windows-1252, whose five unassigned bytes (0x81, 0x8D, 0x8F, 0x90, 0x9D)
MySQL maps to the C1 controls of the same number; Python's cp1252 refuses them."""
_LATIN1_CHARS = "".join(
    chr(b) if b in (0x81, 0x8D, 0x8F, 0x90, 0x9D) else bytes([b]).decode("cp1252")
    for b in range(256)
)


def _mysql_latin1(name: str) -> codecs.CodecInfo | None:
    """The codec search function of MYSQL_LATIN1 (a charmap codec: decoded in C)."""
    if name != MYSQL_LATIN1:
        return None
    encoding_map = codecs.charmap_build(_LATIN1_CHARS)

    def decode(data: Buffer, errors: str = "strict", /) -> tuple[str, int]:
        return codecs.charmap_decode(data, errors, _LATIN1_CHARS)

    def encode(text: str, errors: str = "strict", /) -> tuple[bytes, int]:
        return codecs.charmap_encode(text, errors, encoding_map)

    return codecs.CodecInfo(encode, decode, name=MYSQL_LATIN1)


codecs.register(_mysql_latin1)

_SIMPLE: dict[int, Callable[[int], Reader]] = {
    YEAR: lambda _: _year,
    FLOAT: lambda _: _fixed(_F32.unpack_from, 4),
    DOUBLE: lambda _: _fixed(_F64.unpack_from, 8),
    DATE: lambda _: _date,
    NEWDATE: lambda _: _date,
    TIME2: _time2,
    DATETIME2: _datetime2,
    TIMESTAMP2: _timestamp2,
    DATETIME: lambda _: _old_datetime,
    TIME: lambda _: _old_time,
    TIMESTAMP: lambda _: _old_timestamp,
    BIT: lambda bits: _bit((bits + 7) // 8),
    JSON: _json,
    NULL: lambda _: _nothing,
}
"""Readers of the types whose reading depends on the metadata at most."""


# --- the events ----------------------------------------------------------------------------------

_TRUNCATE = re.compile(r"^\s*TRUNCATE\s+(?:TABLE\s+)?(?:`?(\w+)`?\.)?`?(\w+)`?\s*$", re.I)
_SHAPES_KEPT = 4_096
"""Table map shapes kept decoded (a schema change makes a new one)."""


class BinlogDecoder:
    """The decoder of one replication stream's events, in order: it keeps the stream's
    state (file, checksum, table maps, the pending GTID)."""

    def __init__(self, schemas: Collection[str], log_file: str, checksum: bool) -> None:
        self.schemas = frozenset(schemas)
        self.log_file = log_file
        """The file the events are in (a rotate event names the next one)."""
        self.position = 0
        """The position after the last commit seen."""
        self.first_timestamp_ms: int | None = None
        """The time of the last format description with one: when the server began its file."""
        self._checksum = CHECKSUM_LEN if checksum else 0
        self._post_header = dict(_DEFAULT_POST_HEADER)
        self._mariadb = True
        self._tables: dict[int, Table | None] = {}
        self._shapes: dict[bytes, Table | None] = {}
        self._gtid: Gtid | None = None

    def feed(self, packet: bytes) -> list[Item]:
        """One event as the server sent it (the OK byte, then the event): its items, [] for an
        event of no interest. An event it cannot decode is a TerminalConnectorError saying
        where, never another exception: resuming would meet the same bytes again."""
        try:
            return self._decode(packet)
        except (ValueError, IndexError, KeyError, StopIteration, struct.error) as exc:
            raise TerminalConnectorError(
                f"cannot decode the binlog event after {self.log_file}:"
                f"{self.position & 0xFFFF_FFFF}: {exc!r}"
            ) from exc

    def _decode(self, packet: bytes) -> list[Item]:
        timestamp, kind, server_id, _, log_pos, _ = HEADER.unpack_from(packet, 1)
        end = len(packet) - self._checksum
        if kind == FORMAT_DESCRIPTION:
            self._format(packet, timestamp)
            end = len(packet) - self._checksum
        if self._checksum:
            stored = _U32.unpack_from(packet, end)[0]
            if zlib.crc32(memoryview(packet)[1:end]) != stored:
                raise TerminalConnectorError(
                    f"a binlog event at {self.log_file}:{log_pos} failed its checksum"
                )
        body = 1 + HEADER_LEN
        if kind in ROWS_KIND:
            return self._rows(packet, body, end, kind, log_pos)
        if kind == TABLE_MAP:
            self._table_map(packet, body, end)
            return []
        if kind == XID:
            return [self._commit(timestamp, log_pos)]
        if kind == MARIADB_GTID:
            seq, domain, _ = _GTID.unpack_from(packet, body)
            self._gtid = Gtid(domain, server_id, seq)
            return []
        if kind == QUERY:
            return self._query(packet, body, end, timestamp, log_pos)
        if kind == ROTATE:
            self.log_file = packet[body + 8 : end].decode("utf-8")
            # Table ids are the server's, valid until it restarts, which begins a new file:
            # every rows event follows its own table map, so none is needed across files.
            self._tables.clear()
            return []
        if kind in MARIADB_COMPRESSED:
            raise TerminalConnectorError(
                "the source server compresses its binary log: set log_bin_compress = OFF "
                "(docs/cdc.md)"
            )
        if kind == MARIADB_START_ENCRYPTION:
            raise TerminalConnectorError(
                "the source server encrypts its binary log (encrypt_binlog): openfdi cannot "
                "read it (docs/cdc.md)"
            )
        if kind == PARTIAL_UPDATE_ROWS:
            raise TerminalConnectorError(
                "the source server logs partial JSON updates: set binlog_row_value_options "
                "= '' (docs/cdc.md)"
            )
        return []

    def _format(self, packet: bytes, timestamp: int) -> None:
        """A format description: its server (MariaDB or MySQL), its checksum algorithm (the
        byte before its own 4-byte checksum field) and its post-header lengths."""
        body = 1 + HEADER_LEN
        version = packet[body + 2 : body + 52].rstrip(b"\0").decode("ascii", "replace")
        self._mariadb = "mariadb" in version.lower()
        algorithm = packet[len(packet) - CHECKSUM_LEN - 1]
        self._checksum = CHECKSUM_LEN if algorithm else 0
        lengths = packet[body + _FDE_FIXED : len(packet) - CHECKSUM_LEN - 1]
        self._post_header = {
            **_DEFAULT_POST_HEADER,
            **{kind: lengths[kind - 1] for kind in _DEFAULT_POST_HEADER if kind <= len(lengths)},
        }
        if timestamp:
            self.first_timestamp_ms = timestamp * 1000

    def _commit(self, timestamp: int, log_pos: int) -> TxnCommit:
        self.position = encode_position(self.log_file, log_pos)
        gtid, self._gtid = self._gtid, None
        return TxnCommit(self.position, timestamp * 1_000_000, gtid)

    def _query(
        self, packet: bytes, body: int, end: int, timestamp: int, log_pos: int
    ) -> list[Item]:
        post = self._post_header[QUERY]
        schema_len = packet[body + 8]
        status_len = _U16.unpack_from(packet, body + 11)[0]
        at = body + post + status_len
        schema = packet[at : at + schema_len].decode("utf-8", "replace")
        text = packet[at + schema_len + 1 : end].decode("utf-8", "replace").strip()
        if len(text) < 16 and text.upper() == "COMMIT":
            return [self._commit(timestamp, log_pos)]
        found = _TRUNCATE.match(text)
        if found is not None:
            table = TableName(found.group(1) or schema, found.group(2))
            if table.schema in self.schemas:
                return [RowChange("TRUNCATE", table, (), None, None)]
        return []

    def _table_id(self, packet: bytes, body: int, kind: int) -> int:
        # A 6-byte table id (4 bytes in a post-header of 6, from servers before 5.1.4).
        width = 4 if self._post_header[kind] == 6 else 6
        return int.from_bytes(packet[body : body + width], "little")

    def _table_map(self, packet: bytes, body: int, end: int) -> None:
        table_id = self._table_id(packet, body, TABLE_MAP)
        payload = packet[body + self._post_header[TABLE_MAP] : end]
        if payload in self._shapes:
            self._tables[table_id] = self._shapes[payload]
            return
        size = payload[0]
        schema = payload[1 : 1 + size].decode("utf-8", "replace")
        table = _Shape(payload, self._mariadb).table() if schema in self.schemas else None
        if len(self._shapes) >= _SHAPES_KEPT:
            self._shapes.clear()
        self._shapes[payload] = self._tables[table_id] = table

    def _rows(self, packet: bytes, body: int, end: int, kind: int, log_pos: int) -> list[Item]:
        table_id = self._table_id(packet, body, kind)
        if table_id not in self._tables:
            raise TerminalConnectorError(
                f"a rows event at {self.log_file}:{log_pos} names table id {table_id}, "
                "whose table map the stream did not have"
            )
        table = self._tables[table_id]
        if table is None:
            return []
        pos = body + self._post_header[kind]
        if kind >= WRITE_V2:  # v2: extra data, its length counting itself
            pos += _U16.unpack_from(packet, pos - 2)[0] - 2
        count, pos = lenenc(packet, pos)
        width = (count + 7) // 8
        images = 2 if kind in (UPDATE_V1, UPDATE_V2) else 1
        full = (1 << count) - 1
        for _ in range(images):
            if int.from_bytes(packet[pos : pos + width], "little") != full:
                raise TerminalConnectorError(
                    f"the binlog logs only some columns of {table.name}'s rows: set "
                    "binlog_row_image = FULL in the source server's configuration (docs/cdc.md)"
                )
            pos += width
        if count != len(table.readers):
            raise TerminalConnectorError(
                f"a rows event of {table.name} has {count} columns, its table map "
                f"{len(table.readers)}"
            )
        try:
            return self._row_images(packet, pos, end, table, ROWS_KIND[kind], width)
        except (ValueError, IndexError, struct.error) as exc:  # UnicodeDecodeError included
            raise TerminalConnectorError(
                f"cannot decode a row of {table.name} at {self.log_file}:{log_pos}: {exc}"
            ) from exc

    @staticmethod
    def _row_images(
        packet: bytes, pos: int, end: int, table: Table, kind: str, width: int
    ) -> list[Item]:
        readers, name, columns = table.readers, table.name, table.columns
        out: list[Item] = []
        while pos < end:
            images: list[tuple[Any, ...]] = []
            for _ in range(2 if kind == "UPDATE" else 1):
                nulls = int.from_bytes(packet[pos : pos + width], "little")
                pos += width
                values: list[Any] = []
                if nulls:
                    for i, read in enumerate(readers):
                        if nulls >> i & 1:
                            values.append(None)
                        else:
                            value, pos = read(packet, pos)
                            values.append(value)
                else:
                    for read in readers:
                        value, pos = read(packet, pos)
                        values.append(value)
                images.append(tuple(values))
            if kind == "INSERT":
                out.append(RowChange(kind, name, columns, images[0], None))
            elif kind == "DELETE":
                out.append(RowChange(kind, name, columns, None, images[0]))
            else:
                out.append(RowChange(kind, name, columns, images[1], images[0]))
        if pos != end:
            raise ValueError(f"{end - pos} bytes left over after the rows")
        return out
