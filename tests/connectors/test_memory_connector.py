"""The in-memory MEMORY connector the engine tests use: the SPI's contract without a server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from openfdi.connectors.errors import InvalidContentError, QueryCancelledError, TableNotFoundError
from openfdi.connectors.memory.connector import drop_store, store
from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import (
    Batch,
    Column,
    LogicalType,
    ReadPlan,
    TableSchema,
    WriteMode,
    WritePlan,
)

SCHEMA = TableSchema(
    "t",
    (Column("id", LogicalType.BIGINT, is_primary_key=True), Column("v", LogicalType.TEXT)),
    ("id",),
)


@pytest.fixture
def name() -> Iterator[str]:
    name = f"mem_{secrets.token_hex(4)}"
    yield name
    drop_store(name)


def test_reads_incrementally_in_batches_past_a_watermark(name: str) -> None:
    store(name).create(SCHEMA, [(i, f"v{i}") for i in (3, 1, 2, 5, 4)])
    with Registry.discover().open("MEMORY", {"name": name}) as conn:
        plan = ReadPlan("t", incremental_column="id", watermark="2", batch_rows=2)
        batches = list(conn.read(plan))
    assert [b.rows for b in batches] == [[(3, "v3"), (4, "v4")], [(5, "v5")]]
    assert [b.position for b in batches] == [4, 5]
    assert batches[-1].last


def test_writes_are_seen_only_after_commit_and_upsert_by_key(name: str) -> None:
    with Registry.discover().open("MEMORY", {"name": name}) as conn:
        plan = WritePlan(
            "t", write_mode=WriteMode.UPSERT, key_columns=("id",), source_schema=SCHEMA
        )
        conn.prepare_target(plan)
        conn.write(Batch.of(("id", "v"), [(1, "a"), (2, "b")]), plan)
        assert store(name).rows("t") == []
        conn.commit()
        conn.write(Batch.of(("id", "v"), [(2, "B"), (3, "c")]), plan)
        conn.rollback()
        conn.write(Batch.of(("id", "v"), [(2, "B2")]), plan)
        conn.commit()
    assert store(name).rows("t") == [(1, "a"), (2, "B2")]


def test_missing_table_name_and_cancel_are_refused(name: str) -> None:
    with pytest.raises(InvalidContentError):
        Registry.discover().open("MEMORY", {})
    conn = Registry.discover().open("MEMORY", {"name": name})
    with pytest.raises(TableNotFoundError):
        conn.describe("nope")
    conn.cancel()
    with pytest.raises(QueryCancelledError):
        conn.list_tables()
    conn.close()
