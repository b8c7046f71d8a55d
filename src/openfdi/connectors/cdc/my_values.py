"""One value form per MySQL column type, whichever path a value took: the snapshot (asyncmy reads
the server's text protocol) and the binlog stream (my_binlog.py decodes the row image) give
different Python values for the same stored value. Each column gets one converter that takes
either and gives what both appliers write exactly (docs/cdc.md, "Values"):

- decimal: its digits, never an exponent (both give Decimal);
- time: `[-]HHH:MM:SS[.ffffff]` text (both give timedelta);
- bit(n): n binary digits, PostgreSQL's bit text (both give the bytes);
- set: the members in definition order, comma-separated, '' for the empty set (both give it);
- binary(n): n bytes (the binlog strips trailing zero bytes);
- geometry types: WKB, or EWKB (PostGIS' form, the SRID inside) when the SRID is not 0 (both
  give MySQL's stored form: 4 bytes SRID, then WKB);
- float: the shortest text that reads back to the same 4 bytes (the stream gives the 4 bytes'
  double, 0.10000000149011612 for 0.1);
- uuid, inet6, inet4 (MariaDB): their text as the server shows it (the stream gives their
  stored bytes);
- json: its text (MariaDB's json is text; MySQL's binary json arrives parsed);
- date, datetime, timestamp: the value (both give datetime); a zero or partial date as NULL
  (the snapshot gives its text, the stream None);
- the rest (year included, 0 for `0000`): ints, doubles and text as the drivers give them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Converter = Callable[[Any], Any]
_F32 = struct.Struct("<f")
BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
GEOMETRY_TYPES = frozenset(
    {
        "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
        "multipolygon", "geometrycollection",
    }
)  # fmt: skip
_EWKB_SRID = 0x2000_0000
"""PostGIS' flag in a WKB geometry type: an SRID follows the type."""


def time_text(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    total, micro = value.days * 86_400 + value.seconds, value.microseconds
    text = f"{sign}{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"
    return f"{text}.{micro:06d}" if micro else text


def single_text(value: float) -> str:
    """A single-precision value as the server prints it: the shortest text that reads back
    to the same 4 bytes (0.1, not 0.10000000149011612)."""
    packed = _F32.pack(value)
    for digits in range(6, 10):
        text = f"{value:.{digits}g}"
        if _F32.pack(float(text)) == packed:
            return text
    return repr(value)


def text_value(value: Any) -> Any:
    """A value of a type without a converter of its own, as the appliers take it."""
    if value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return time_text(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _binary(value: Any) -> Any:
    if isinstance(value, str):  # the stream's decoder gives '' for an empty value
        return value.encode("utf-8", "surrogateescape")
    return value


def _fixed_binary(width: int) -> Converter:
    def convert(value: Any) -> Any:
        value = _binary(value)
        # The binlog strips a binary(n) value's trailing zero bytes; the column holds n bytes.
        return value.ljust(width, b"\0") if isinstance(value, bytes) else value

    return convert


def _bits(width: int) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, bytes):
            return format(int.from_bytes(value, "big"), f"0{width}b")
        return value

    return convert


def _single(value: Any) -> Any:
    return single_text(value) if isinstance(value, float) else value


def _decimal(value: Any) -> Any:
    return format(value, "f") if isinstance(value, Decimal) else value


def _time(value: Any) -> Any:
    return time_text(value) if isinstance(value, dt.timedelta) else text_value(value)


def _date(value: Any) -> Any:
    # A zero or partial date ('0000-00-00', '2020-00-00', storable under a lax sql_mode) has
    # no value in PostgreSQL or Python: the snapshot's driver gives its text, the stream's
    # decoder None. Both go as NULL.
    return None if isinstance(value, str) else value


def geometry_wkb(value: Any) -> Any:
    """MySQL's stored geometry (4 bytes SRID, little-endian, then WKB) as WKB, or as EWKB with
    the SRID when it is not 0."""
    if not isinstance(value, bytes) or len(value) < 9:
        return value
    srid, wkb = int.from_bytes(value[:4], "little"), value[4:]
    if srid == 0:
        return wkb
    order = "<" if wkb[0] == 1 else ">"
    (kind,) = struct.unpack(order + "I", wkb[1:5])
    return wkb[:1] + struct.pack(order + "II", kind | _EWKB_SRID, srid) + wkb[5:]


def geometry_stored(value: Any) -> Any:
    """WKB or EWKB as a MySQL geometry column takes it (its stored form)."""
    if not isinstance(value, bytes) or len(value) < 5:
        return value
    order = "<" if value[0] == 1 else ">"
    (kind,) = struct.unpack(order + "I", value[1:5])
    if kind & _EWKB_SRID:
        (srid,) = struct.unpack(order + "I", value[5:9])
        wkb = value[:1] + struct.pack(order + "I", kind & ~_EWKB_SRID) + value[9:]
        return srid.to_bytes(4, "little") + wkb
    return b"\0\0\0\0" + value


def _stored(width: int, text: Callable[[bytes], str]) -> Converter:
    """A MariaDB type stored as `width` bytes (the binlog drops their trailing zero bytes) and
    shown as text (what the snapshot's driver gives): the text."""

    def convert(value: Any) -> Any:
        return text(value.ljust(width, b"\0")) if isinstance(value, bytes) else value

    return convert


def inet6_text(stored: bytes) -> str:
    """An INET6 as MariaDB shows it: hex words, the longest run of zero words (the first of
    equal ones, even a single word) as `::`; an IPv4-compatible (`::1.2.3.4`) or IPv4-mapped
    (`::ffff:1.2.3.4`) address with its last 4 bytes in dotted form. (Python's ipaddress
    follows RFC 5952, which never shortens a single zero word.)"""
    words = [int.from_bytes(stored[i : i + 2], "big") for i in range(0, 16, 2)]
    run, start, i = 0, -1, 0
    while i < 8:
        j = i
        while j < 8 and words[j] == 0:
            j += 1
        if j - i > run:
            run, start = j - i, i
        i = max(j, i + 1)
    dotted = ".".join(str(b) for b in stored[12:])
    if start == 0 and run == 6:
        return f"::{dotted}"
    if start == 0 and run == 5 and words[5] == 0xFFFF:
        return f"::ffff:{dotted}"
    text = [format(w, "x") for w in words]
    if start < 0:
        return ":".join(text)
    return ":".join(text[:start]) + "::" + ":".join(text[start + run :])


_ADDRESS_TYPES = {
    "uuid": _stored(16, lambda b: str(uuid.UUID(bytes=b))),
    "inet6": _stored(16, inet6_text),
    "inet4": _stored(4, lambda b: ".".join(str(x) for x in b)),
}
"""MariaDB's UUID, INET6 and INET4: the binlog carries their bytes, a SELECT their text."""


_WIDTH = re.compile(r"\((\d+)")


def converter(data_type: str, column_type: str) -> Converter | None:
    """The converter of a column (information_schema DATA_TYPE and COLUMN_TYPE), None for the
    types whose values both drivers give as what the appliers write unchanged."""
    kind = data_type.lower()
    width = _WIDTH.search(column_type)
    if kind == "binary":
        return _fixed_binary(int(width.group(1)) if width else 1)
    if kind in BINARY_TYPES:
        return _binary
    if kind == "bit":
        return _bits(int(width.group(1)) if width else 1)
    if kind == "float":
        return _single
    if kind == "decimal":
        return _decimal
    if kind == "time":
        return _time
    if kind in GEOMETRY_TYPES:
        return geometry_wkb
    if kind in ("date", "datetime", "timestamp"):
        return _date
    if kind in _ADDRESS_TYPES:
        return _ADDRESS_TYPES[kind]
    if kind in NATIVE_TYPES:
        return None
    return text_value


NATIVE_TYPES = frozenset(
    {
        "tinyint", "smallint", "mediumint", "int", "bigint", "year", "double", "char", "varchar",
        "tinytext", "text", "mediumtext", "longtext",
    }
)  # fmt: skip
"""Types whose values the drivers read as what both appliers write exactly as they are (int,
float, date, datetime, str): a snapshot passes them on unconverted."""
