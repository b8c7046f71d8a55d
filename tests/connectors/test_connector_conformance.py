"""Conformance: each registered connector, chosen by its declared capabilities, behaves the same."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from openfdi.connectors.errors import (
    QueryCancelledError,
    TableNotFoundError,
    TerminalConnectorError,
)
from openfdi.connectors.spi import (
    Batch,
    Column,
    Connector,
    LogicalType,
    ReadPlan,
    TableSchema,
    WriteMode,
    WritePlan,
    WriteResult,
)

Row = tuple[Any, ...]

ORDERS = TableSchema(
    "orders",
    (
        Column("id", LogicalType.BIGINT, nullable=False, is_primary_key=True),
        Column("qty", LogicalType.INT, nullable=False),
        Column("code", LogicalType.VARCHAR, length=5),
        Column("updated_at", LogicalType.TIMESTAMP),
    ),
    ("id",),
)
T0 = datetime(2026, 1, 1, 12, 0, 0)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def create(conn: Connector, schema: TableSchema = ORDERS, table: str | None = None) -> None:
    name = table or schema.name
    conn.prepare_target(WritePlan(name, source_schema=schema))
    conn.commit()


def write(
    conn: Connector,
    rows: list[Row],
    *,
    table: str = "orders",
    columns: tuple[str, ...] = ORDERS.names,
    mode: WriteMode = WriteMode.INSERT,
    keys: tuple[str, ...] = (),
    commit: bool = True,
) -> WriteResult:
    plan = WritePlan(table, columns, write_mode=mode, key_columns=keys)
    conn.prepare_target(plan)
    result = conn.write(Batch.of(columns, rows), plan)
    if commit:
        conn.commit()
    return result


def read_rows(conn: Connector, plan: ReadPlan) -> list[Row]:
    return [row for batch in conn.read(plan) for row in batch.rows]


def orders(n: int, start: int = 1) -> list[Row]:
    return [(i, i * 10, f"c{i % 1000}", at(i)) for i in range(start, start + n)]


@pytest.mark.needs("read")
def test_check_succeeds_on_a_reachable_datasource(harness: Any) -> None:
    harness.connector().check()


@pytest.mark.needs("read")
def test_list_tables_and_describe_native_tables(harness: Any) -> None:
    harness.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, note TEXT)")
    harness.execute("CREATE VIEW item_names AS SELECT id, name FROM items")
    conn = harness.connector()

    assert {"items", "item_names"} <= set(conn.list_tables())
    schema = conn.describe("items")
    assert schema.primary_key == ("id",)
    assert schema.columns == (
        Column("id", LogicalType.INT, nullable=False, is_primary_key=True),
        Column("name", LogicalType.VARCHAR, nullable=False, length=20),
        Column("note", LogicalType.TEXT),
    )
    assert all(c.native_type for c in schema.columns)
    assert conn.describe("item_names").names == ("id", "name")


@pytest.mark.needs("read")
def test_describe_of_a_missing_table_raises_table_not_found(harness: Any) -> None:
    with pytest.raises(TableNotFoundError):
        harness.connector().describe("no_such_table")


@pytest.mark.needs("read", "write")
def test_full_read_streams_every_row_in_bounded_batches(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    rows = orders(2_500)
    assert write(conn, rows).rows_written == 2_500

    batches = list(harness.connector().read(ReadPlan("orders", batch_rows=1_000)))

    assert [len(b) for b in batches] == [1_000, 1_000, 500]
    assert all(b.columns == ORDERS.names and b.nbytes > 0 for b in batches)
    assert sorted(row for b in batches for row in b.rows) == rows


@pytest.mark.needs("read", "write")
def test_batches_end_at_the_byte_bound(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(300))

    batches = list(conn.read(ReadPlan("orders", batch_rows=10_000, batch_bytes=2_000)))

    assert len(batches) > 1
    assert sum(len(b) for b in batches) == 300


@pytest.mark.needs("read", "write")
def test_read_selects_columns_in_order_and_filters_with_where(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(20))

    rows = read_rows(conn, ReadPlan("orders", columns=("code", "id"), where="qty > 150"))

    assert sorted(rows, key=lambda r: r[1]) == [(f"c{i}", i) for i in range(16, 21)]


@pytest.mark.needs("read", "write", "incremental")
def test_incremental_read_is_ordered_past_the_watermark_and_never_splits_ties(
    harness: Any,
) -> None:
    conn = harness.connector()
    create(conn)
    stamps = [1, 2, 2, 2, 3, 4]
    write(conn, [(i, i, "a", at(s)) for i, s in enumerate(stamps, start=1)])

    plan = ReadPlan("orders", incremental_column="updated_at", watermark=at(1), batch_rows=2)
    batches = list(conn.read(plan))

    # Three rows share at(2): they stay in one batch although the bound is 2 rows.
    assert [[r[0] for r in b.rows] for b in batches] == [[2, 3, 4], [5, 6]]
    assert [b.position for b in batches] == [at(2), at(4)]


@pytest.mark.needs("read", "write", "incremental")
def test_polling_from_the_last_position_sees_only_new_rows(harness: Any) -> None:
    source = harness.connector()
    writer = harness.connector()
    create(writer)
    write(writer, orders(5))
    first = list(source.read(ReadPlan("orders", incremental_column="updated_at")))
    position = first[-1].position
    assert position == at(5)

    write(writer, orders(3, start=6))
    # The watermark comes back from a JSON checkpoint as ISO text.
    again = ReadPlan("orders", incremental_column="updated_at", watermark=position.isoformat())
    assert [r[0] for r in read_rows(source, again)] == [6, 7, 8]


@pytest.mark.needs("read", "write", "incremental")
def test_incremental_on_an_unselected_integer_column(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(6))

    plan = ReadPlan("orders", columns=("code",), incremental_column="id", watermark="3")
    batches = list(conn.read(plan))

    assert [r for b in batches for r in b.rows] == [("c4",), ("c5",), ("c6",)]
    assert batches[-1].position == 6


@pytest.mark.needs("write")
def test_insert_appends_and_truncate_insert_replaces(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(3))
    write(conn, orders(2, start=4))
    assert harness.query("SELECT count(*) FROM orders") == [(5,)]

    result = write(conn, orders(2, start=100), mode=WriteMode.TRUNCATE_INSERT)

    assert result.rows_written == 2
    assert sorted(harness.query("SELECT id FROM orders")) == [(100,), (101,)]


@pytest.mark.needs("write")
def test_truncate_insert_keeps_old_rows_until_commit(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(3))

    write(conn, orders(1, start=50), mode=WriteMode.TRUNCATE_INSERT, commit=False)
    conn.rollback()

    assert sorted(harness.query("SELECT id FROM orders")) == [(1,), (2,), (3,)]


@pytest.mark.needs("write")
def test_upsert_updates_existing_keys_and_keeps_the_last_duplicate(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(3))

    batch = [(2, 222, "new2", at(2)), (4, 40, "c4", at(4)), (4, 44, "last", at(4))]
    result = write(conn, batch, mode=WriteMode.UPSERT, keys=("id",))

    assert result.rows_written == 3
    assert result.rejected == []
    assert sorted(harness.query("SELECT id, qty, code FROM orders")) == [
        (1, 10, "c1"),
        (2, 222, "new2"),
        (3, 30, "c3"),
        (4, 44, "last"),
    ]


@pytest.mark.needs("write")
def test_rollback_discards_uncommitted_writes(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(4), commit=False)
    conn.rollback()
    assert harness.query("SELECT count(*) FROM orders") == [(0,)]


@pytest.mark.needs("write")
def test_dirty_rows_are_reported_one_by_one_and_good_rows_written(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, [(1, 10, "ok", at(1))])
    good = [(2, 20, "a", at(2)), (3, 30, "b", at(3)), (7, 70, "c", at(7))]
    bad = {
        "null in NOT NULL": (4, None, "x", at(4)),
        "not a number": (5, "many", "x", at(5)),
        "too long": (6, 60, "toolong", at(6)),
        "duplicate of a stored key": (1, 11, "dup", at(1)),
        "duplicate within the batch": (2, 21, "dup", at(2)),
    }
    batch = [good[0], bad["null in NOT NULL"], good[1], bad["not a number"]]
    batch += [bad["too long"], bad["duplicate of a stored key"], good[2]]
    batch += [bad["duplicate within the batch"]]

    result = write(conn, batch)

    assert result.rows_written == len(good)
    assert [r.row for r in result.rejected] == [
        bad["null in NOT NULL"],
        bad["not a number"],
        bad["too long"],
        bad["duplicate of a stored key"],
        bad["duplicate within the batch"],
    ]
    assert all(r.reason.strip() for r in result.rejected)
    stored = harness.query("SELECT id, qty, code FROM orders")
    assert sorted(stored) == [(1, 10, "ok"), (2, 20, "a"), (3, 30, "b"), (7, 70, "c")]


@pytest.mark.needs("write")
def test_a_missing_target_is_refused_when_creation_is_off(harness: Any) -> None:
    conn = harness.connector()
    with pytest.raises(TableNotFoundError):
        conn.prepare_target(WritePlan("absent", create_table=False, source_schema=ORDERS))


@pytest.mark.needs("write")
def test_unknown_columns_are_named_in_the_error(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    with pytest.raises(TerminalConnectorError, match="nope"):
        conn.prepare_target(WritePlan("orders", ("id", "nope")))
    with pytest.raises(TerminalConnectorError, match="nope"):
        conn.read(ReadPlan("orders", columns=("nope",)))


@pytest.mark.needs("read", "write")
def test_odd_identifiers_are_quoted_not_pasted(harness: Any) -> None:
    table = 'we"ird `t%s` ; --'
    schema = TableSchema(
        table,
        (
            Column("i d", LogicalType.BIGINT, nullable=False, is_primary_key=True),
            Column('va"l`%', LogicalType.VARCHAR, length=10),
        ),
        ("i d",),
    )
    conn = harness.connector()
    create(conn, schema)
    write(conn, [(1, "x"), (2, "y%")], table=table, columns=schema.names)
    write(conn, [(2, "z")], table=table, columns=schema.names, mode=WriteMode.UPSERT, keys=("i d",))

    assert table in conn.list_tables()
    plan = ReadPlan(table, incremental_column="i d", watermark=0)
    assert read_rows(conn, plan) == [(1, "x"), (2, "z")]


@pytest.mark.needs("read", "write")
def test_stopping_a_read_early_leaves_the_connector_usable(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(5_000))

    stream = conn.read(ReadPlan("orders", batch_rows=100))
    assert len(next(iter(stream))) == 100
    stream.close()  # type: ignore[attr-defined]  # a generator: stop it early

    assert len(read_rows(conn, ReadPlan("orders"))) == 5_000


@pytest.mark.needs("read", "write")
def test_cancel_from_another_thread_interrupts_a_running_read(harness: Any) -> None:
    conn = harness.connector()
    create(conn)
    write(conn, orders(1))
    plan = ReadPlan("orders", where=harness.slow_where)
    timer = threading.Timer(0.3, conn.cancel)

    started = time.monotonic()
    timer.start()
    with pytest.raises(QueryCancelledError):
        read_rows(conn, plan)
    elapsed = time.monotonic() - started
    timer.join()

    assert elapsed < 5, f"cancel took {elapsed:.1f}s; the query alone runs for 30s"
    with pytest.raises(QueryCancelledError):
        conn.describe("orders")  # a cancelled connector is finished


SERVERS = [
    pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql"),
    pytest.param("mysql", marks=pytest.mark.mysql, id="mysql"),
]


@pytest.mark.parametrize("server", SERVERS)
def test_qualified_names_reach_another_schema(server: str, make_harness: Any) -> None:
    harness = make_harness(server)
    other = f"other_{secrets.token_hex(3)}"
    if server == "postgresql":
        harness.execute(f'CREATE SCHEMA "{other}"')
        harness.cleanups.append(f'DROP SCHEMA "{other}" CASCADE')
    else:  # a MySQL schema is a database
        harness.execute(f"CREATE DATABASE `{other}`")
        harness.cleanups.append(f"DROP DATABASE `{other}`")
    table = f"{other}.things"
    conn = harness.connector()

    create(conn, ORDERS, table=table)
    write(conn, orders(3), table=table)

    assert conn.describe(table).primary_key == ("id",)
    assert sorted(read_rows(conn, ReadPlan(table))) == orders(3)
    if server == "postgresql":  # MySQL lists the datasource's own database only
        assert table in conn.list_tables()
