"""Column types of files (layer: connectors): Arrow types <-> openfdi's logical types, and the
type of a CSV or JSON column guessed from its first values when no field list declares it.

Guessing never loses a value: a column is a number, a date or a timestamp only when every value
seen has that exact form, decimals stay decimals (a fraction without an exponent is DECIMAL with
the largest scale seen, never a binary double), and anything else is text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pyarrow as pa

from openfdi.connectors.spi import Column, LogicalType, TableSchema

__all__ = ["arrow_schema", "arrow_type", "guess_column", "logical_column", "table_schema"]

_INT = re.compile(r"^[+-]?\d{1,38}$")
_INT64 = (-(2**63), 2**63 - 1)
_DECIMAL = re.compile(r"^[+-]?(\d+)\.(\d+)$")
_DOUBLE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan|Infinity|NaN)$")
_BOOL = frozenset({"true", "false", "TRUE", "FALSE", "True", "False"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?"
_TIMESTAMP = re.compile(_STAMP + "$")
_TIMESTAMPTZ = re.compile(_STAMP + r"(Z|[+-]\d{2}:?\d{2})$")
UNBOUNDED_SCALE = 38


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type a column's values are written as (Parquet's column type)."""
    kind = column.type
    if kind is LogicalType.DECIMAL:
        if column.precision is None or column.precision > 38:
            return pa.string()  # an unbounded decimal keeps every digit as text
        return pa.decimal128(column.precision, column.scale or 0)
    simple: dict[LogicalType, pa.DataType] = {
        LogicalType.BIGINT: pa.int64(),
        LogicalType.INT: pa.int32(),
        LogicalType.SMALLINT: pa.int16(),
        LogicalType.DOUBLE: pa.float64(),
        LogicalType.FLOAT: pa.float32(),
        LogicalType.VARCHAR: pa.string(),
        LogicalType.TEXT: pa.string(),
        LogicalType.JSON: pa.string(),
        LogicalType.BOOLEAN: pa.bool_(),
        LogicalType.DATE: pa.date32(),
        LogicalType.TIME: pa.time64("us"),
        LogicalType.INTERVAL: pa.duration("us"),
        LogicalType.TIMESTAMP: pa.timestamp("us"),
        LogicalType.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
        LogicalType.BINARY: pa.binary(),
    }
    return simple[kind]


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c), nullable=c.nullable) for c in columns])


def logical_column(field: pa.Field) -> Column:
    """A Parquet (Arrow) column in logical terms."""
    t = field.type
    kind: LogicalType
    precision = scale = None
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        kind = LogicalType.SMALLINT
    elif pa.types.is_int32(t) or pa.types.is_uint16(t):
        kind = LogicalType.INT
    elif pa.types.is_int64(t) or pa.types.is_uint32(t):
        kind = LogicalType.BIGINT
    elif pa.types.is_uint64(t):
        kind, precision, scale = LogicalType.DECIMAL, 20, 0
    elif pa.types.is_decimal(t):
        kind, precision, scale = LogicalType.DECIMAL, t.precision, t.scale
    elif pa.types.is_float32(t) or pa.types.is_float16(t):
        kind = LogicalType.FLOAT
    elif pa.types.is_float64(t):
        kind = LogicalType.DOUBLE
    elif pa.types.is_boolean(t):
        kind = LogicalType.BOOLEAN
    elif pa.types.is_date(t):
        kind = LogicalType.DATE
    elif pa.types.is_time(t):
        kind = LogicalType.TIME
    elif pa.types.is_timestamp(t):
        kind = LogicalType.TIMESTAMPTZ if t.tz else LogicalType.TIMESTAMP
    elif pa.types.is_duration(t):
        kind = LogicalType.INTERVAL
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        kind = LogicalType.BINARY
    else:
        kind = LogicalType.TEXT  # strings, and anything nested (read as its text)
    return Column(field.name, kind, field.nullable, None, precision, scale, native_type=str(t))


def table_schema(name: str, schema: pa.Schema) -> TableSchema:
    return TableSchema(name, tuple(logical_column(f) for f in schema))


def guess_column(name: str, values: Iterable[str | None]) -> Column:
    """The narrowest logical type every one of these text values has (TEXT when none fits)."""
    seen = [v.strip() for v in values if v is not None and v.strip() != ""]

    def column(kind: LogicalType, precision: int | None = None, scale: int | None = None) -> Column:
        return Column(name, kind, True, None, precision, scale, native_type=kind.value)

    if not seen:
        return column(LogicalType.TEXT)
    if all(_INT.match(v) for v in seen):
        if all(_INT64[0] <= int(v) <= _INT64[1] for v in seen):
            return column(LogicalType.BIGINT)
        return column(LogicalType.DECIMAL, 38, 0)  # wider than 64 bits: still exact
    if all(_INT.match(v) or _DECIMAL.match(v) for v in seen):
        scale = max(len(m.group(2)) for v in seen if (m := _DECIMAL.match(v)))
        if scale <= UNBOUNDED_SCALE:
            return column(LogicalType.DECIMAL, 38, scale)
    if all(_DOUBLE.match(v) for v in seen):
        return column(LogicalType.DOUBLE)
    if all(v in _BOOL for v in seen):
        return column(LogicalType.BOOLEAN)
    if all(_DATE.match(v) for v in seen):
        return column(LogicalType.DATE)
    if all(_TIMESTAMP.match(v) for v in seen):
        return column(LogicalType.TIMESTAMP)
    if all(_TIMESTAMPTZ.match(v) for v in seen):
        return column(LogicalType.TIMESTAMPTZ)
    return column(LogicalType.TEXT)
