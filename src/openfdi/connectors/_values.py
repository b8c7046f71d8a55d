"""Plain value helpers shared by the connectors (layer: connectors): sizes, dates and times."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context, Decimal
from operator import itemgetter
from typing import Any

# Approximate in-transit sizes of fixed-width values; strings and bytes count their length.
_FIXED_BYTES: dict[type, int] = {
    int: 8,
    float: 8,
    bool: 1,
    type(None): 1,
    Decimal: 16,
    date: 4,
    time: 8,
    datetime: 8,
    timedelta: 8,
}


def estimate_row_bytes(row: Sequence[Any]) -> int:
    """Estimate the bytes a row carries (characters count as one byte each)."""
    total = 0
    for value in row:
        kind = type(value)
        if kind is str or kind is bytes:
            total += len(value)
        else:
            total += _FIXED_BYTES.get(kind, 16)
    return total


def estimate_rows_bytes(rows: Sequence[Sequence[Any]]) -> int:
    """`estimate_row_bytes` summed over rows."""
    return sum(map(estimate_row_bytes, rows))


def typed_sizer(
    variable: Sequence[int], fixed_bytes: int
) -> Callable[[Sequence[Sequence[Any]]], int]:
    """A fast `estimate_rows_bytes` for rows whose variable-size fields sit at known positions.

    Args:
        variable: Indexes of the text and binary fields; only these are measured.
        fixed_bytes: What the other fields of one row count for together.
    """
    getters = [itemgetter(i) for i in variable]

    def size(rows: Sequence[Sequence[Any]]) -> int:
        total = fixed_bytes * len(rows)
        try:
            for get in getters:
                total += sum(len(v) for v in map(get, rows) if v is not None)
        except TypeError:  # a value of another type where text was declared (SQLite allows it)
            return estimate_rows_bytes(rows)
        return total

    return size


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 timestamp, with `T` or a space, with or without an offset or `Z`."""
    return datetime.fromisoformat(text.strip())


def as_utc(value: datetime) -> datetime:
    """The same instant as an aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def as_naive_utc(value: datetime) -> datetime:
    """An aware datetime as naive UTC wall time; a naive one is returned as it is."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def format_interval(value: timedelta) -> str:
    """A duration as `[-]H:MM:SS[.ffffff]`, hours unbounded: the text MySQL's TIME and
    PostgreSQL's interval both parse back to the same duration (str(timedelta) gives
    "-1 day, 23:59:59" for minus one second, which neither reads as that)."""
    micros = value // timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    seconds, micro = divmod(abs(micros), 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    fraction = f".{micro:06d}" if micro else ""
    return f"{sign}{hour:02d}:{minute:02d}:{second:02d}{fraction}"


_INTERVAL_TEXT = re.compile(r"(-?)(\d+):([0-5]\d):([0-5]\d)(?:\.(\d{1,6}))?")


def parse_interval(text: str) -> timedelta:
    """The duration `format_interval` wrote (`[-]H:MM:SS[.ffffff]`); ValueError for other text."""
    match = _INTERVAL_TEXT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration ([-]H:MM:SS[.ffffff])")
    sign, hours, minutes, seconds, fraction = match.groups()
    span = timedelta(
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "").ljust(6, "0")),
    )
    return -span if sign else span


def date_of(value: Any) -> Any:
    """A value for a DATE column, never losing a time of day: a datetime at midnight (an aware
    one in UTC, the sessions' zone) becomes its date, and ValueError refuses one with a time,
    which PostgreSQL's and MySQL's date would silently drop; so does text that reads as such a
    datetime. Other values (a date, text that is no datetime) are left to the target."""
    if isinstance(value, str):
        try:
            value = parse_datetime(value)
        except ValueError:
            return value  # "2024-01-02", "infinity", "0044-03-15 BC": the target's to judge
    if not isinstance(value, datetime):
        return value
    wall = as_naive_utc(value)
    if wall.time() != time(0):
        raise ValueError(f"{value} is not a date (it has a time of day)")
    return wall.date()


_DATE_OR_NULL = frozenset({date, type(None)})


def only_dates(values: Sequence[Any]) -> bool:
    """Every value is a date (not a datetime) or NULL: `date_of` would leave each as it is."""
    return set(map(type, values)) <= _DATE_OR_NULL


# Checking a scale must never round or overflow, whatever the default context's precision.
_WIDE = Context(prec=100_000)


def within_scale(value: Any, precision: int | None, scale: int) -> Any:
    """`value` for a decimal(precision, scale) column, or ValueError when it has non-zero digits
    past `scale` decimals, which every SQL target would round away without a word. 1.250 fits
    scale 2 (its last digit is zero); non-numbers and non-finite values are left to the target."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest text that reads back as this double
    else:
        return value
    if not number.is_finite():
        return value
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -scale:
        return value
    try:
        fits = number == number.quantize(Decimal(1).scaleb(-scale), context=_WIDE)
    except ArithmeticError:
        return value  # far too many digits for any column: the target refuses it
    if not fits:
        declared = f"decimal({precision},{scale})" if precision is not None else f"scale {scale}"
        raise ValueError(f"{value} has more decimals than {declared} keeps: it would be rounded")
    return value


def time_from_timedelta(value: timedelta) -> time:
    """A time of day from a duration (what MySQL drivers return for TIME); ValueError, saying
    so, for one outside 00:00:00..23:59:59.999999 (a TIME column also holds -838:59:59)."""
    if value < timedelta(0) or value >= timedelta(days=1):
        raise ValueError(
            f"duration {format_interval(value)} is not a time of day "
            "(00:00:00 to 23:59:59.999999); an interval column would hold it"
        )
    micros = value // timedelta(microseconds=1)
    seconds, micro = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return time(hour, minute, second, micro)


def to_time_of_day(value: Any) -> Any:
    """A value for a TIME column: a duration becomes the time of day it stands for, or is
    refused (ValueError) when it is none; any other value is left to the target to judge."""
    return time_from_timedelta(value) if isinstance(value, timedelta) else value


def to_interval(value: Any) -> Any:
    """A value for an INTERVAL column: a time of day becomes its duration since midnight; any
    other value is left as it is."""
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError(f"{value} has a time zone, which a duration cannot keep")
        return timedelta(
            hours=value.hour,
            minutes=value.minute,
            seconds=value.second,
            microseconds=value.microsecond,
        )
    return value
