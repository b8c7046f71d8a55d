"""The canonical typed table of the round-trip tests: one column of every logical type, and
edge values of each (extremes, NULLs, unicode, ~1 MiB text and binary)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from openfdi.connectors.spi import Column, LogicalType, TableSchema

__all__ = ["CANONICAL_ROWS", "CANONICAL_SCHEMA"]


def _col(name: str, kind: LogicalType, **extra: Any) -> Column:
    return Column(name, kind, **extra)


CANONICAL_SCHEMA = TableSchema(
    "typed",
    (
        _col("id", LogicalType.BIGINT, nullable=False, is_primary_key=True),
        _col("i", LogicalType.INT),
        _col("s", LogicalType.SMALLINT),
        _col("d", LogicalType.DECIMAL, precision=12, scale=2),
        _col("wide", LogicalType.DECIMAL, precision=38, scale=10),
        _col("x", LogicalType.DOUBLE),
        _col("f", LogicalType.FLOAT),
        _col("v", LogicalType.VARCHAR, length=32),
        _col("t", LogicalType.TEXT),
        _col("b", LogicalType.BOOLEAN),
        _col("dt", LogicalType.DATE),
        _col("tm", LogicalType.TIME),
        _col("ts", LogicalType.TIMESTAMP),
        _col("tz", LogicalType.TIMESTAMPTZ),
        _col("bin", LogicalType.BINARY),
        _col("j", LogicalType.JSON),
    ),
    ("id",),
)

_MEGA_TEXT = ("x" * 1023 + "€") * 1024  # ~1 MiB of characters, some of them multi-byte
_MEGA_BYTES = bytes(range(256)) * 4096  # 1 MiB, every byte value

CANONICAL_ROWS: list[tuple[Any, ...]] = [
    (
        1,
        2147483647,
        32767,
        Decimal("12345678.90"),
        Decimal("1234567890123456789012345678.0123456789"),
        0.1 + 0.2,
        0.5,
        "héllo wörld ✓ 🎉 'quoted' \\ \t",
        "line one\nline two, ünïcödé 中文",
        True,
        date(1999, 12, 31),
        time(23, 59, 59, 999999),
        datetime(2024, 2, 29, 23, 59, 59, 999999),
        datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        bytes(range(256)),
        '{"a": [1, 2.5, "ü"], "b": null}',
    ),
    (
        2,
        -2147483648,
        -32768,
        Decimal("-0.01"),
        Decimal("-0.0000000001"),
        -1.7976931348623157e308,
        3.1415927,
        "",
        "",
        False,
        date(1970, 1, 1),
        time(0, 0),
        datetime(1970, 1, 1, 0, 0, 0, 1),
        datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        b"",
        "[]",
    ),
    (9223372036854775807, *([None] * 15)),
    (
        4,
        0,
        0,
        Decimal("0.00"),
        Decimal("99999999999999999999999999.9999999999"),
        5e-324,
        -1e-30,
        "z" * 32,
        _MEGA_TEXT,
        True,
        date(2000, 2, 29),
        time(12, 0, 0, 1),
        datetime(2000, 1, 1),
        datetime(2000, 1, 1, tzinfo=UTC),
        _MEGA_BYTES,
        '"just a string"',
    ),
]
