"""SQLite reads converted a column at a time (layer: connectors): the fast path of `reader_for`.

`types.reader_for` converts value by value, a few Python calls per value: for a typed table that
costs more than SQLite takes to produce the rows. Here a fetched chunk is turned into columns and
each column is converted by C builtins mapped over it (`datetime.fromisoformat`, `Decimal`, ...).

A fast path must give exactly what `reader_for` gives, and SQLite stores anything in any column.
So each one only vouches for the canonical storage forms (those `types.writer_for` writes): it
checks the column's values and raises `_Slow` when they are not all in that form, or fails on its
own (ValueError, TypeError, ArithmeticError) on a value it cannot take. Either way that column of
that chunk goes through `reader_for` value by value instead, exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from itertools import repeat
from operator import attrgetter, is_, mul, truediv
from typing import Any

from openfdi.connectors.spi import Column, LogicalType, Row
from openfdi.connectors.sqlite import types

__all__ = ["ColumnRead", "RowsRead", "column_reader", "positions", "rows_reader"]

ColumnRead = Callable[[Sequence[Any]], list[Any] | None]
"""A column's stored values (NULLs included) -> its SPI values, or None when they are unchanged."""
RowsRead = Callable[[Sequence[Row]], list[Row]]
"""A fetched chunk of rows -> the same rows in SPI values."""


class _Slow(Exception):
    """The values are not all in canonical form: convert them one by one."""


_FALLBACK = (_Slow, ValueError, TypeError, ArithmeticError)
_INTEGERS = frozenset({LogicalType.BIGINT, LogicalType.INT, LogicalType.SMALLINT})
_BOOLS: dict[Any, Any] = {0: False, 1: True, None: None}
_BOOL_FORMS = frozenset(_BOOLS)
_TZINFO = attrgetter("tzinfo")
# Decimals of at most this many significant digits survive a trip through a double (DBL_DIG).
_DOUBLE_DIGITS = 15


def rows_reader(columns: Sequence[Column]) -> RowsRead | None:
    """Convert fetched rows column by column; None when no column needs converting."""
    readers = [(i, r) for i, c in enumerate(columns) if (r := column_reader(c)) is not None]
    if not readers:
        return None

    def read(rows: Sequence[Row]) -> list[Row]:
        if not rows:
            return []
        values: list[Sequence[Any]] = list(zip(*rows, strict=True))
        changed = False
        for i, read_column in readers:
            converted = read_column(values[i])
            if converted is not None:
                values[i] = converted
                changed = True
        # Columns whose values needed no change are not copied: only rebuild rows if one did.
        return list(zip(*values, strict=True)) if changed else list(rows)

    return read


def column_reader(column: Column) -> ColumnRead | None:
    """The fast conversion of one column, falling back to `reader_for` per value; None if the
    column's stored values are its SPI values already (text)."""
    slow = types.reader_for(column)
    if slow is None:
        return None
    fast = _fast_for(column)

    def read(values: Sequence[Any]) -> list[Any] | None:
        try:
            return fast(values)
        except _FALLBACK:
            return [None if v is None else slow(v) for v in values]

    return read


def _fast_for(column: Column) -> ColumnRead:
    kind = column.type
    if kind in _INTEGERS:
        return _unchanged_without(float)  # an integral float would become an int
    if kind in (LogicalType.DOUBLE, LogicalType.FLOAT):
        return _unchanged_without(int)  # an int would become a float
    if kind is LogicalType.BINARY:
        return _unchanged_without(str)  # text would be encoded
    if kind is LogicalType.JSON:
        return _unchanged_without(int, float)  # a number would become its JSON text
    if kind is LogicalType.BOOLEAN:
        return _booleans
    if kind is LogicalType.DATE:
        return _with_nulls_as("1970-01-01", _dates)
    if kind is LogicalType.TIME:
        return _with_nulls_as("00:00:00", _times)
    if kind is LogicalType.TIMESTAMP:
        return _with_nulls_as("1970-01-01 00:00:00", _timestamps)
    if kind is LogicalType.TIMESTAMPTZ:
        return _with_nulls_as("1970-01-01 00:00:00+00:00", _timestamps_utc)
    if kind is LogicalType.DECIMAL:
        return _decimals(column.scale)
    return _always_slow  # a type added to `reader_for` without a fast path here


def _always_slow(values: Sequence[Any]) -> None:
    raise _Slow


# --- columns kept as they are --------------------------------------------------------------------


def _unchanged_without(*kinds: type) -> ColumnRead:
    """Stored values pass unchanged when none of them has one of the types `reader_for` turns
    into something else (a NULL or any other type it keeps as stored)."""
    converted = frozenset(kinds)

    def check(values: Sequence[Any]) -> None:
        if not converted.isdisjoint(map(type, values)):
            raise _Slow

    return check


def _booleans(values: Sequence[Any]) -> list[Any]:
    # Stored as 0/1. `reader_for` maps 0, 1 (and 0.0, 1.0, which equal them) the same way; any
    # other value (text such as 'true') is its business.
    if not _BOOL_FORMS.issuperset(values):
        raise _Slow
    return list(map(_BOOLS.__getitem__, values))


# --- columns parsed from text --------------------------------------------------------------------


def _with_nulls_as(
    placeholder: Any, convert: Callable[[list[Any]], list[Any]]
) -> Callable[[Sequence[Any]], list[Any]]:
    """Run `convert` (a map in C over values without NULLs) over a column that has NULLs.

    The NULLs are swapped for `placeholder`, a canonical value, so the map needs no test per
    value, then put back: the cost is per NULL, not per value.
    """

    def run(values: Sequence[Any]) -> list[Any]:
        nulls = positions(values, None)
        filled = list(values)
        for i in nulls:
            filled[i] = placeholder
        out = convert(filled)
        for i in nulls:
            out[i] = None
        return out

    return run


def positions(values: Sequence[Any], wanted: Any) -> list[int]:
    """Where `wanted` is, found by `index` (a scan in C): cheap when it is rare."""
    found: list[int] = []
    start = 0
    try:
        while True:
            start = values.index(wanted, start) + 1
            found.append(start - 1)
    except ValueError:
        return found


def _dates(values: list[Any]) -> list[Any]:
    # `reader_for` parses the first 10 characters; a longer value is not canonical.
    if max(map(len, values)) > 10:
        raise _Slow
    return list(map(date.fromisoformat, values))


def _times(values: list[Any]) -> list[Any]:
    return list(map(time.fromisoformat, values))  # what `reader_for` does to text


def _timestamps(values: list[Any]) -> list[Any]:
    # Canonical TIMESTAMP text has no offset; one with an offset is converted to UTC wall time.
    # fromisoformat refuses surrounding spaces, which `reader_for` strips.
    out = list(map(datetime.fromisoformat, values))
    if not all(map(is_, map(_TZINFO, out), repeat(None))):
        raise _Slow
    return out


def _timestamps_utc(values: list[Any]) -> list[Any]:
    # `+00:00` (or `Z`) parses to the UTC singleton, which `as_utc` leaves as it is; any other
    # offset is converted, and no offset at all is taken as UTC.
    out = list(map(datetime.fromisoformat, values))
    if not all(map(is_, map(_TZINFO, out), repeat(UTC))):
        raise _Slow
    return out


# --- decimals ------------------------------------------------------------------------------------


def _decimals(scale: int | None) -> ColumnRead:
    """Decimals stored as text (wide ones) or as numbers (numeric affinity: REAL or INTEGER)."""
    texts = _with_nulls_as("0", _decimal_texts)
    numbers = _with_nulls_as(1, _numbers_by_repr if scale is None else _numbers_at_scale(scale))

    def read(values: Sequence[Any]) -> list[Any]:
        kinds = set(map(type, values))
        kinds.discard(type(None))
        if kinds <= {str}:
            return texts(values)
        if kinds <= {int, float}:
            return numbers(values)
        raise _Slow

    return read


def _decimal_texts(values: list[Any]) -> list[Any]:
    return list(map(Decimal, values))  # what `reader_for` does to text, at any scale


def _numbers_by_repr(values: list[Any]) -> list[Any]:
    # What `reader_for` does without a scale: Decimal(repr(v)) (the same as Decimal(v) for an int).
    return list(map(Decimal, map(repr, values)))


def _numbers_at_scale(scale: int) -> Callable[[list[Any]], list[Any]]:
    """`reader_for`'s Decimal(repr(v)).quantize(10**-scale), computed through integers.

    The shortcut: n = round(v * 10**scale) and, when n / 10**scale == v (correctly rounded) and
    |n| < 10**15, the result is Decimal(n).scaleb(-scale). Why it is exact: v is then the double
    nearest to D = n * 10**-scale, a decimal of at most 15 significant digits, and repr(v) (the
    shortest text that reads back as v) is at most as long as D and reads back to the same double;
    two decimals of at most 15 digits never share their nearest double, so repr(v) is D, and
    quantizing D to the scale gives coefficient n. One exception: a zero keeps the sign of -0.0
    in `reader_for`'s result (n cannot), so zeros take `reader_for`'s own route.
    """
    factor = 10**scale
    quantum = Decimal(1).scaleb(-scale)
    limit = 10**_DOUBLE_DIGITS
    wide = types.WIDE_CONTEXT

    def by_repr(values: list[Any]) -> list[Any]:
        decimals = map(Decimal, map(repr, values))
        return list(map(Decimal.quantize, decimals, repeat(quantum), repeat(None), repeat(wide)))

    def convert(values: list[Any]) -> list[Any]:
        scaled = list(map(round, map(mul, values, repeat(float(factor)))))
        if max(map(abs, scaled)) >= limit or list(map(truediv, scaled, repeat(factor))) != values:
            return by_repr(values)  # still `reader_for`'s operations, only mapped in C
        out = list(map(wide.scaleb, scaled, repeat(-scale)))  # exact: 15 digits, prec 1000
        for i in positions(scaled, 0):
            out[i] = by_repr([values[i]])[0]
        return out

    return convert
