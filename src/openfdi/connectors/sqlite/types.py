"""SQLite declared types <-> logical types, and value conversions both ways (layer: connectors).

SQLite stores any value in any column; a declared type only sets an affinity. So this module does
what a typed server would do elsewhere: on write it checks and converts each value for the target
column (a failure makes the row dirty data, as a type error would on PostgreSQL), and on read it
turns the stored text and numbers back into the column's logical type.

Storage forms: booleans as 0/1, dates and times as ISO-8601 text (`YYYY-MM-DD HH:MM:SS.ffffff`,
with `+00:00` for TIMESTAMPTZ, which sorts and compares correctly as text), decimals as text,
durations as `[-]H:MM:SS[.ffffff]` (MySQL's TIME text).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from openfdi.connectors._sqlbase import Convert
from openfdi.connectors._values import (
    as_naive_utc,
    as_utc,
    date_of,
    format_interval,
    parse_datetime,
    parse_interval,
    time_from_timedelta,
    to_interval,
    within_scale,
)
from openfdi.connectors.spi import Column, LogicalType

_DECL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_ ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")

# Doubles hold 15 significant digits exactly; decimals that fit keep a numeric column (so SQL on
# the target compares them as numbers), wider ones are kept as text to lose no digit.
REAL_SAFE_DIGITS = 15

_INT_RANGE = {
    LogicalType.SMALLINT: (-(2**15), 2**15 - 1),
    LogicalType.INT: (-(2**31), 2**31 - 1),
    LogicalType.BIGINT: (-(2**63), 2**63 - 1),
}
_TRUE = frozenset({"1", "t", "true", "y", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "n", "no", "off"})
# Quantizing to a scale must never round away digits, whatever the default context's precision.
WIDE_CONTEXT = Context(prec=1000)


def column_from_declared(
    name: str, declared: str, *, nullable: bool, is_primary_key: bool
) -> Column:
    """A logical column from SQLite's declared type text (as `PRAGMA table_info` gives it)."""
    match = _DECL.match(declared or "")
    base = match.group(1).upper().replace(" ", "") if match else (declared or "").upper()
    first = int(match.group(2)) if match and match.group(2) else None
    second = int(match.group(3)) if match and match.group(3) else None

    def col(kind: LogicalType, **extra: Any) -> Column:
        return Column(
            name,
            kind,
            nullable=nullable,
            is_primary_key=is_primary_key,
            native_type=declared,
            **extra,
        )

    if base.startswith(("DECIMAL", "NUMERIC", "NUMBER")):
        return col(LogicalType.DECIMAL, precision=first, scale=second if first else None)
    if base.startswith("JSON"):
        return col(LogicalType.JSON)
    exact: dict[str, LogicalType] = {
        "BIGINT": LogicalType.BIGINT,
        "INTEGER": LogicalType.BIGINT,  # SQLite integers are 64-bit
        "INT8": LogicalType.BIGINT,
        "INT": LogicalType.INT,
        "INT4": LogicalType.INT,
        "MEDIUMINT": LogicalType.INT,
        "SMALLINT": LogicalType.SMALLINT,
        "INT2": LogicalType.SMALLINT,
        "TINYINT": LogicalType.SMALLINT,
        "BOOLEAN": LogicalType.BOOLEAN,
        "BOOL": LogicalType.BOOLEAN,
        "DATE": LogicalType.DATE,
        "TIME": LogicalType.TIME,
        "INTERVAL": LogicalType.INTERVAL,
        "DATETIME": LogicalType.TIMESTAMP,
        "TIMESTAMP": LogicalType.TIMESTAMP,
        "TIMESTAMPWITHOUTTIMEZONE": LogicalType.TIMESTAMP,
        "TIMESTAMPTZ": LogicalType.TIMESTAMPTZ,
        "TIMESTAMPWITHTIMEZONE": LogicalType.TIMESTAMPTZ,
        "FLOAT": LogicalType.FLOAT,
        "FLOAT4": LogicalType.FLOAT,
        "REAL": LogicalType.DOUBLE,  # SQLite's REAL is 8 bytes
        "DOUBLE": LogicalType.DOUBLE,
        "DOUBLEPRECISION": LogicalType.DOUBLE,
        "FLOAT8": LogicalType.DOUBLE,
    }
    if base in exact:
        return col(exact[base])
    # Otherwise SQLite's own affinity rules decide, in their documented order.
    if "INT" in base:
        return col(LogicalType.BIGINT)
    if "CHAR" in base:
        return col(LogicalType.VARCHAR, length=first)
    if "CLOB" in base or "TEXT" in base or not base:
        return col(LogicalType.TEXT)
    if "BLOB" in base or "BINARY" in base or base == "BYTEA":
        return col(LogicalType.BINARY, length=first)
    if "REAL" in base or "FLOA" in base or "DOUB" in base:
        return col(LogicalType.DOUBLE)
    return col(LogicalType.TEXT)


def declared_from_column(column: Column) -> str:
    """The declared type to create a column with; `column_from_declared` maps it back."""
    kind = column.type
    if kind is LogicalType.DECIMAL:
        p, s = column.precision, column.scale
        if p is not None and p <= REAL_SAFE_DIGITS:
            return f"DECIMAL({p},{s or 0})"
        # "TEXT" in the name gives the column text affinity, so SQLite keeps every digit.
        return f"DECIMAL_TEXT({p},{s or 0})" if p is not None else "DECIMAL_TEXT"
    if kind is LogicalType.VARCHAR:
        return f"VARCHAR({column.length})" if column.length else "VARCHAR"
    if kind is LogicalType.BINARY:
        return "BLOB"
    if kind is LogicalType.JSON:
        # Text affinity: a plain JSON column would turn a document like `1.50` into a number.
        return "JSON_TEXT"
    return {
        LogicalType.BIGINT: "BIGINT",
        LogicalType.INT: "INT",
        LogicalType.SMALLINT: "SMALLINT",
        LogicalType.DOUBLE: "DOUBLE",
        LogicalType.FLOAT: "FLOAT",
        LogicalType.TEXT: "TEXT",
        LogicalType.BOOLEAN: "BOOLEAN",
        LogicalType.DATE: "DATE",
        LogicalType.TIME: "TIME",
        # INTEGER affinity (by "INT"), but a stored duration always has colons: it stays text.
        LogicalType.INTERVAL: "INTERVAL",
        LogicalType.TIMESTAMP: "TIMESTAMP",
        LogicalType.TIMESTAMPTZ: "TIMESTAMPTZ",
    }[kind]


# --- reading: stored value -> SPI value. Lenient: a value that does not parse is kept as stored,
# and the target decides whether it is dirty.


def _lenient(func: Convert) -> Convert:
    def convert(value: Any) -> Any:
        try:
            return func(value)
        except (ValueError, TypeError, ArithmeticError):
            return value

    return convert


def reader_for(column: Column) -> Convert | None:
    kind = column.type
    if kind is LogicalType.BOOLEAN:
        return _lenient(_to_bool)
    if kind is LogicalType.DECIMAL:
        scale = column.scale

        def read_decimal(value: Any) -> Any:
            if isinstance(value, str):
                return Decimal(value)
            # Stored as a number by numeric affinity: restore the declared scale (exact, as the
            # column holds at most REAL_SAFE_DIGITS digits when we created it).
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            if scale is None:
                return number
            return number.quantize(Decimal(1).scaleb(-scale), context=WIDE_CONTEXT)

        return _lenient(read_decimal)
    if kind in (LogicalType.DOUBLE, LogicalType.FLOAT):
        return _lenient(lambda v: float(v) if isinstance(v, int) else v)
    if kind in _INT_RANGE:
        return _lenient(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    if kind is LogicalType.DATE:
        # Text with a time of day stays as it is (the target refuses it): never cut to a date.
        return _lenient(lambda v: _read_date(v) if isinstance(v, str) else v)
    if kind is LogicalType.TIME:
        return _lenient(lambda v: time.fromisoformat(v) if isinstance(v, str) else v)
    if kind is LogicalType.INTERVAL:
        return _lenient(lambda v: parse_interval(v) if isinstance(v, str) else v)
    if kind is LogicalType.TIMESTAMP:
        return _lenient(lambda v: as_naive_utc(_stamp(v)))
    if kind is LogicalType.TIMESTAMPTZ:
        return _lenient(lambda v: as_utc(_stamp(v)))
    if kind is LogicalType.BINARY:
        return _lenient(lambda v: v.encode() if isinstance(v, str) else v)
    if kind is LogicalType.JSON:
        return _lenient(lambda v: json.dumps(v) if isinstance(v, int | float) else v)
    return None


def _read_date(text: str) -> Any:
    if len(text) == 10:
        return date.fromisoformat(text)
    return date_of(text)  # a midnight timestamp's date; ValueError for one with a time


def _stamp(value: Any) -> datetime:
    if isinstance(value, str):
        return parse_datetime(value)
    if isinstance(value, int | float):  # Unix seconds, a common way to keep time in SQLite
        return datetime.fromtimestamp(value, UTC)
    raise TypeError(type(value).__name__)


# --- writing: SPI value -> stored value. Strict: raising rejects the row with the message.


def writer_for(column: Column) -> Convert:
    kind = column.type
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        return lambda v: _to_int(v, low, high, kind)
    if kind is LogicalType.DECIMAL:
        return lambda v: _to_decimal_text(v, column.precision, column.scale)
    if kind in (LogicalType.DOUBLE, LogicalType.FLOAT):
        return _to_float
    if kind in (LogicalType.VARCHAR, LogicalType.TEXT):
        length = column.length if kind is LogicalType.VARCHAR else None
        return lambda v: _to_text(v, length)
    if kind is LogicalType.BOOLEAN:
        return lambda v: int(_to_bool(v))
    if kind is LogicalType.DATE:
        return lambda v: _to_date(v).isoformat()
    if kind is LogicalType.TIME:
        return lambda v: _to_time(v).isoformat()
    if kind is LogicalType.INTERVAL:
        return lambda v: format_interval(_to_interval(v))
    if kind is LogicalType.TIMESTAMP:
        return lambda v: as_naive_utc(_to_datetime(v)).isoformat(" ")
    if kind is LogicalType.TIMESTAMPTZ:
        return lambda v: as_utc(_to_datetime(v)).isoformat(" ")
    if kind is LogicalType.BINARY:
        return lambda v: _to_bytes(v, column.length)
    return _to_json


def _to_int(value: Any, low: int, high: int, kind: LogicalType) -> int:
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        number = int(value)
    elif isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise ValueError(f"{value} is not an integer")
        number = int(value)
    elif isinstance(value, str):
        number = int(value.strip())
    else:
        raise TypeError(f"{type(value).__name__} value {value!r} is not an integer")
    if not low <= number <= high:
        raise ValueError(f"{number} is out of range for {kind.value}")
    return number


def _to_decimal_text(value: Any, precision: int | None, scale: int | None) -> str:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise TypeError(f"{type(value).__name__} value {value!r} is not a number")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError:
        raise ValueError(f"{value!r} is not a number") from None
    if number.is_finite() and scale is not None:
        within_scale(number, precision, scale)  # never rounded away: ValueError refuses the row
        number = number.quantize(
            Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=WIDE_CONTEXT
        )
    if number.is_finite() and precision is not None:
        digits_before_point = max(number.adjusted() + 1, 0)
        if digits_before_point > precision - (scale or 0):
            raise ValueError(f"{value} overflows decimal({precision},{scale or 0})")
    return str(number)


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, float | int | Decimal | str):
        raise TypeError(f"{type(value).__name__} value {value!r} is not a number")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{number} cannot be stored by SQLite (it stores NULL instead)")
    return number


def _to_text(value: Any, length: int | None) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode()  # UnicodeDecodeError is a ValueError: dirty row
    elif isinstance(value, str):
        text = value
    else:
        text = str(value)
    if length is not None and len(text) > length:
        raise ValueError(f"value too long for varchar({length})")
    return text


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"{value!r} is not a boolean")


def _to_date(value: Any) -> date:
    value = date_of(value)  # ValueError for a datetime (or its text) with a time of day
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value.strip())
    raise TypeError(f"{type(value).__name__} value {value!r} is not a date")


def _to_time(value: Any) -> time:
    if isinstance(value, str):
        return time.fromisoformat(value.strip())
    if isinstance(value, time):
        return value
    if isinstance(value, timedelta):
        return time_from_timedelta(value)  # ValueError outside a day: the row is refused
    raise TypeError(f"{type(value).__name__} value {value!r} is not a time")


def _to_interval(value: Any) -> timedelta:
    if isinstance(value, str):
        return parse_interval(value)
    converted = to_interval(value)
    if isinstance(converted, timedelta):
        return converted
    raise TypeError(f"{type(value).__name__} value {value!r} is not a duration")


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        return parse_datetime(value)
    raise TypeError(f"{type(value).__name__} value {value!r} is not a timestamp")


def _to_bytes(value: Any, length: int | None) -> bytes:
    if isinstance(value, str):
        data = value.encode()
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        raise TypeError(f"{type(value).__name__} value is not binary")
    if length is not None and len(data) > length:
        raise ValueError(f"value too long for binary({length})")
    return data


def _to_json(value: Any) -> str:
    if isinstance(value, str):
        json.loads(value)  # a JSONDecodeError is a ValueError: the row is dirty
        return value
    return json.dumps(value, ensure_ascii=False)
