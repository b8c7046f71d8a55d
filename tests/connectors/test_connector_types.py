"""Type fidelity: native types map to the right logical types, and every source x target pair
copies every logical type value by value, creating the target table from the source schema."""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from openfdi.connectors.spi import Batch, LogicalType, ReadPlan, TableSchema, WritePlan

Row = tuple[Any, ...]

# Native DDL type -> (logical type, length, precision, scale), per dialect.
NATIVE: dict[str, list[tuple[str, LogicalType, int | None, int | None, int | None]]] = {
    "sqlite": [
        ("INTEGER", LogicalType.BIGINT, None, None, None),
        ("INT", LogicalType.INT, None, None, None),
        ("SMALLINT", LogicalType.SMALLINT, None, None, None),
        ("NUMERIC(10,3)", LogicalType.DECIMAL, None, 10, 3),
        ("DECIMAL_TEXT(40,5)", LogicalType.DECIMAL, None, 40, 5),
        ("REAL", LogicalType.DOUBLE, None, None, None),
        ("DOUBLE PRECISION", LogicalType.DOUBLE, None, None, None),
        ("FLOAT", LogicalType.FLOAT, None, None, None),
        ("VARCHAR(12)", LogicalType.VARCHAR, 12, None, None),
        ("NVARCHAR(7)", LogicalType.VARCHAR, 7, None, None),
        ("TEXT", LogicalType.TEXT, None, None, None),
        ("CLOB", LogicalType.TEXT, None, None, None),
        ("BOOLEAN", LogicalType.BOOLEAN, None, None, None),
        ("DATE", LogicalType.DATE, None, None, None),
        ("TIME", LogicalType.TIME, None, None, None),
        ("DATETIME", LogicalType.TIMESTAMP, None, None, None),
        ("TIMESTAMP WITH TIME ZONE", LogicalType.TIMESTAMPTZ, None, None, None),
        ("BLOB", LogicalType.BINARY, None, None, None),
        ("JSON", LogicalType.JSON, None, None, None),
        ("", LogicalType.TEXT, None, None, None),
    ],
    "postgresql": [
        ("bigint", LogicalType.BIGINT, None, None, None),
        ("integer", LogicalType.INT, None, None, None),
        ("smallint", LogicalType.SMALLINT, None, None, None),
        ("numeric(10,3)", LogicalType.DECIMAL, None, 10, 3),
        ("numeric", LogicalType.DECIMAL, None, None, None),
        ("double precision", LogicalType.DOUBLE, None, None, None),
        ("real", LogicalType.FLOAT, None, None, None),
        ("varchar(12)", LogicalType.VARCHAR, 12, None, None),
        ("char(3)", LogicalType.VARCHAR, 3, None, None),
        ("text", LogicalType.TEXT, None, None, None),
        ("boolean", LogicalType.BOOLEAN, None, None, None),
        ("date", LogicalType.DATE, None, None, None),
        ("time", LogicalType.TIME, None, None, None),
        ("timestamp", LogicalType.TIMESTAMP, None, None, None),
        ("timestamptz", LogicalType.TIMESTAMPTZ, None, None, None),
        ("bytea", LogicalType.BINARY, None, None, None),
        ("json", LogicalType.JSON, None, None, None),
        ("jsonb", LogicalType.JSON, None, None, None),
        ("uuid", LogicalType.VARCHAR, 36, None, None),
        ("interval", LogicalType.TEXT, None, None, None),
        ("int[]", LogicalType.TEXT, None, None, None),
    ],
    "mysql": [
        ("BIGINT", LogicalType.BIGINT, None, None, None),
        ("BIGINT UNSIGNED", LogicalType.DECIMAL, None, 20, 0),
        ("INT", LogicalType.INT, None, None, None),
        ("INT UNSIGNED", LogicalType.BIGINT, None, None, None),
        ("MEDIUMINT", LogicalType.INT, None, None, None),
        ("SMALLINT", LogicalType.SMALLINT, None, None, None),
        ("TINYINT", LogicalType.SMALLINT, None, None, None),
        ("TINYINT(1)", LogicalType.SMALLINT, None, None, None),  # holds -1 and 2: no boolean
        ("BOOLEAN", LogicalType.SMALLINT, None, None, None),
        ("DECIMAL(10,3)", LogicalType.DECIMAL, None, 10, 3),
        ("DOUBLE", LogicalType.DOUBLE, None, None, None),
        ("FLOAT", LogicalType.FLOAT, None, None, None),
        ("VARCHAR(12)", LogicalType.VARCHAR, 12, None, None),
        ("CHAR(3)", LogicalType.VARCHAR, 3, None, None),
        ("ENUM('a','bb')", LogicalType.VARCHAR, 2, None, None),
        ("TEXT", LogicalType.TEXT, None, None, None),
        ("LONGTEXT", LogicalType.TEXT, None, None, None),
        ("DATE", LogicalType.DATE, None, None, None),
        ("TIME(6)", LogicalType.INTERVAL, None, None, None),  # -838:59:59..838:59:59
        ("DATETIME(6)", LogicalType.TIMESTAMP, None, None, None),
        ("TIMESTAMP(6) NULL", LogicalType.TIMESTAMPTZ, None, None, None),
        ("VARBINARY(16)", LogicalType.BINARY, 16, None, None),
        ("LONGBLOB", LogicalType.BINARY, None, None, None),
        ("JSON", LogicalType.JSON, None, None, None),
        ("YEAR", LogicalType.SMALLINT, None, None, None),
    ],
}


@pytest.mark.needs("read")
def test_native_types_map_to_logical_types(harness: Any) -> None:
    cases = NATIVE[harness.name]
    columns = ", ".join(f"{harness.q(f'c{i}')} {native}" for i, (native, *_) in enumerate(cases))
    harness.execute(f"CREATE TABLE native_types ({columns})")

    schema = harness.connector().describe("native_types")

    got = [(c.type, c.length, c.precision, c.scale) for c in schema.columns]
    want = [(kind, length, p, s) for _native, kind, length, p, s in cases]
    assert got == want


def assert_same_values(schema: TableSchema, expected: list[Row], actual: list[Row]) -> None:
    """Compare cell by cell: equal value, same Python type, and for decimals the same scale."""
    assert len(actual) == len(expected)
    for want_row, got_row in zip(expected, actual, strict=True):
        for col, want, got in zip(schema.columns, want_row, got_row, strict=True):
            where = f"row {want_row[0]}, column {col.name}"
            if want is None:
                assert got is None, where
                continue
            assert type(got) is type(want), f"{where}: {type(got).__name__} {got!r}"
            if col.type is LogicalType.FLOAT:  # a binary32 value, however it was printed
                assert struct.pack("<f", got) == struct.pack("<f", want), where
            elif isinstance(want, Decimal):
                assert str(got) == str(want), where
            else:
                assert got == want, where
                if col.type is LogicalType.TIMESTAMPTZ:
                    assert got.utcoffset().total_seconds() == 0, where


def copy_table(
    source: Any, target: Any, table: str, schema: TableSchema, *, batch_rows: int = 2
) -> None:
    """What the engine does: describe the source, create the target from it, copy in batches."""
    plan = WritePlan(table, source_schema=schema)
    target.prepare_target(plan)
    for batch in source.read(ReadPlan(schema.name, batch_rows=batch_rows)):
        result = target.write(batch, plan)
        assert result.rejected == []
    target.commit()


@pytest.mark.needs("read", "write")
def test_every_type_round_trips_through_every_pair(
    source_dialect: str,
    target_dialect: str,
    make_harness: Callable[[str], Any],
    canonical_schema: TableSchema,
    canonical_rows: list[Row],
) -> None:
    src = make_harness(source_dialect).connector()
    dst = make_harness(target_dialect).connector()
    plan = WritePlan("typed", source_schema=canonical_schema)
    src.prepare_target(plan)
    assert src.write(Batch.of(canonical_schema.names, canonical_rows), plan).rejected == []
    src.commit()

    expected = sorted(canonical_rows, key=lambda r: r[0])
    source_schema = src.describe("typed")
    assert source_schema.columns == canonical_schema.columns
    stored = sorted((r for b in src.read(ReadPlan("typed")) for r in b.rows), key=lambda r: r[0])
    assert_same_values(canonical_schema, expected, stored)

    copy_table(src, dst, "typed_copy", source_schema)

    created = dst.describe("typed_copy")
    assert created.columns == source_schema.columns  # logical types, nullability, key: all kept
    assert created.primary_key == ("id",)
    copied = sorted(
        (r for b in dst.read(ReadPlan("typed_copy")) for r in b.rows), key=lambda r: r[0]
    )
    assert_same_values(canonical_schema, expected, copied)
