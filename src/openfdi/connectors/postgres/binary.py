"""Which batches may be written with binary COPY, and with which types (layer: connectors).

Binary COPY skips the server's text parsing, but psycopg's binary dumpers, chosen by the target
column's type, trust the Python value: an int too large for an int4 column is silently truncated,
a datetime written to a date column loses its time. So a batch goes binary only when every value
of every column has exactly the Python type and range the column's dumper expects; any other batch
is written as text COPY, where the server parses (and, if need be, refuses) each value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from operator import attrgetter
from typing import Any

__all__ = ["BinaryColumns", "binary_columns"]

Check = Callable[[Sequence[Any]], bool]
"""Whether every value of a column (None included) can be dumped in binary without loss."""

# The checks run over whole columns with C-level builtins (a set of types, min and max, a map of
# attrgetter): a Python-level test per value would cost more than psycopg takes to dump it.
_NULL = type(None)
_TZINFO = attrgetter("tzinfo")


def _types(*kinds: type) -> Check:
    allowed = frozenset((*kinds, _NULL))
    return lambda values: set(map(type, values)) <= allowed


def _ints(bits: int) -> Check:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    exact = _types(int)  # not bool: the server refuses true for an integer

    def check(values: Sequence[Any]) -> bool:
        # filter(None) drops the NULLs, and the zeros too, which are in range anyway.
        return (
            exact(values)
            and low <= min(filter(None, values), default=0)
            and max(filter(None, values), default=0) <= high
        )

    return check


def _zoned(kind: type, *, aware: bool) -> Check:
    """Values of exactly `kind`, all with a time zone (`aware`) or all without."""
    exact = _types(kind)

    def check(values: Sequence[Any]) -> bool:
        if not exact(values):
            return False
        zones = set(map(_TZINFO, filter(None, values)))  # datetimes and times are never false
        return None not in zones if aware else zones <= {None}

    return check


# Base type name -> (the type psycopg dumps it as, the check of a column's values).
_BINARY: dict[str, tuple[str, Check]] = {
    "int2": ("int2", _ints(16)),
    "int4": ("int4", _ints(32)),
    "int8": ("int8", _ints(64)),
    "numeric": ("numeric", _types(Decimal)),
    "float8": ("float8", _types(float)),
    "text": ("text", _types(str)),
    "varchar": ("varchar", _types(str)),
    "bpchar": ("bpchar", _types(str)),
    "bool": ("bool", _types(bool)),
    "date": ("date", _types(date)),
    "time": ("time", _zoned(time, aware=False)),
    "timestamp": ("timestamp", _zoned(datetime, aware=False)),
    "timestamptz": ("timestamptz", _zoned(datetime, aware=True)),
    "bytea": ("bytea", _types(bytes, bytearray, memoryview)),
    # json's binary form is its text; jsonb's has a version byte first, so it stays text COPY.
    # float4 stays text too: rounding a double to binary32 client-side can differ from the
    # server's parsing of its decimal text (and overflow to infinity instead of failing).
    "json": ("text", _types(str)),
}


class BinaryColumns:
    """The binary COPY types of a list of columns, and the check a batch must pass to use them."""

    def __init__(self, types: Sequence[str], checks: Sequence[Check]) -> None:
        self.types = list(types)
        self._checks = list(checks)

    def fits(self, rows: Sequence[Sequence[Any]]) -> bool:
        """Whether every value of `rows` can be written in binary exactly."""
        if not rows:
            return True
        return all(
            check(values)
            for check, values in zip(self._checks, zip(*rows, strict=True), strict=True)
        )


def binary_columns(typnames: Sequence[str]) -> BinaryColumns | None:
    """Binary COPY for columns of these base types (pg_type.typname), or None if some type has no
    lossless binary path from the SPI's values (uuid, jsonb, interval, arrays, enums...)."""
    found = [_BINARY.get(name) for name in typnames]
    if any(f is None for f in found):
        return None
    return BinaryColumns([f[0] for f in found if f], [f[1] for f in found if f])
