"""PostgreSQL writes go binary only when every value is exactly what the binary dumper expects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal

import psycopg
import pytest

from openfdi.connectors.postgres.binary import binary_columns
from openfdi.connectors.postgres.connector import PostgresConnector
from openfdi.connectors.spi import Batch, WritePlan
from tests.services import PG_ADMIN_URL, require

ALL = ["int2", "int4", "int8", "numeric", "float8", "text", "varchar", "bpchar", "bool", "date",
       "time", "timestamp", "timestamptz", "bytea", "json"]  # fmt: skip


def test_types_without_a_lossless_binary_path_stay_text() -> None:
    assert binary_columns(ALL) is not None
    for name in ("uuid", "jsonb", "float4", "interval", "_int4", "my_enum"):
        assert binary_columns(["int8", name]) is None


@pytest.mark.parametrize(
    ("typname", "value"),
    [
        ("int4", 2**40),  # the int4 dumper would silently truncate it
        ("int2", 40_000),
        ("int8", 2**63),
        ("int8", True),  # bool is an int subclass: keep the server's refusal
        ("date", datetime(2026, 1, 1, 12)),  # the date dumper would drop the time
        ("timestamp", datetime(2026, 1, 1, tzinfo=UTC)),
        ("timestamptz", datetime(2026, 1, 1)),
        ("time", time(1, tzinfo=UTC)),
        ("numeric", 1.5),
        ("text", 1),
    ],
)
def test_a_value_the_binary_dumper_would_mangle_sends_the_batch_as_text(
    typname: str, value: object
) -> None:
    columns = binary_columns([typname, "int8"])
    assert columns is not None
    assert not columns.fits([(None, 1), (value, 2)])


def test_exact_values_fit() -> None:
    columns = binary_columns(ALL)
    assert columns is not None
    row = (-(2**15), 2**31 - 1, -(2**63), Decimal("1.10"), 0.1, "ü", "v", "c", True,
           date(1, 1, 1), time(23, 59, 59, 999999), datetime(2026, 1, 2, 3, 4, 5, 6),
           datetime(2026, 1, 2, tzinfo=UTC), b"\x00", '{"a": 1}')  # fmt: skip
    assert columns.fits([row, (None,) * len(ALL)])


@pytest.fixture
def schema() -> Iterator[str]:
    require("postgres")
    name = f"bin_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def test_values_out_of_a_columns_range_are_refused_not_truncated(schema: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".t (id int8 PRIMARY KEY, v int4, d date)')
    content = {"host": "127.0.0.1", "port": 5432, "database_name": "postgres",
               "user_name": "postgres", "schema": schema}  # fmt: skip
    rows = [(1, 7, date(2026, 1, 1)), (2, 2**40, date(2026, 1, 2)), (3, None, None)]
    with PostgresConnector(content) as target:
        plan = WritePlan(table="t", columns=("id", "v", "d"))
        target.prepare_target(plan)
        result = target.write(Batch.of(("id", "v", "d"), rows), plan)
        target.commit()
    assert result.rows_written == 2
    assert [r.row for r in result.rejected] == [rows[1]]
    assert "out of range" in result.rejected[0].reason
    with psycopg.connect(PG_ADMIN_URL) as conn:
        copied = conn.execute(f'SELECT * FROM "{schema}".t ORDER BY id').fetchall()
    assert copied == [rows[0], rows[2]]
