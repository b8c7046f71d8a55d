"""A PostgreSQL target's writes stay uncommitted until `commit()`, on the row path and the
pass-through alike, even on a connection with no transaction open (psycopg's `transaction()`
would begin one there and commit it by itself): a rollback (a stop) leaves nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from threading import Barrier

import psycopg
import pytest

from openfdi.connectors.postgres.connector import PostgresConnector
from openfdi.connectors.spi import Batch, ReadPlan, WritePlan
from tests.services import PG_ADMIN_URL, require


@pytest.fixture
def schema() -> Iterator[str]:
    require("postgres")
    name = f"txn_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
        conn.execute(f'CREATE TABLE "{name}".src (id int8 PRIMARY KEY, v text)')
        conn.execute(f"INSERT INTO \"{name}\".src SELECT g, 'v' || g FROM generate_series(1, 50) g")
        conn.execute(f'CREATE TABLE "{name}".dst (id int8 PRIMARY KEY, v text)')
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _content(schema: str) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": 5432, "database_name": "postgres",
            "user_name": "postgres", "schema": schema}  # fmt: skip


def _count(schema: str) -> int:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        return int(conn.execute(f'SELECT count(*) FROM "{schema}".dst').fetchone()[0])


def test_a_row_write_on_an_idle_connection_is_undone_by_rollback(schema: str) -> None:
    plan = WritePlan(table="dst", columns=("id", "v"))
    with PostgresConnector(_content(schema)) as target:
        target.prepare_target(plan)
        target.commit()  # the connection is idle: no transaction open
        assert target.write(Batch.of(("id", "v"), [(1, "a"), (2, "b")]), plan).rows_written == 2
        assert _count(schema) == 0  # not visible before the commit
        target.rollback()
        assert _count(schema) == 0
        target.write(Batch.of(("id", "v"), [(3, "c")]), plan)
        target.commit()
    assert _count(schema) == 1


def test_a_pass_through_write_on_an_idle_connection_is_undone_by_rollback(schema: str) -> None:
    plan = WritePlan(table="dst", columns=("id", "v"))
    with (
        PostgresConnector(_content(schema)) as source,
        PostgresConnector(_content(schema)) as target,
    ):
        target.prepare_target(plan)
        (form, *_) = source.passthrough_forms("src", ("id", "v"), as_target=False)
        assert form in target.passthrough_forms("dst", ("id", "v"), as_target=True)
        target.commit()  # the connection is idle: no transaction open
        written = 0
        for raw in source.read_raw(ReadPlan("src", columns=("id", "v")), form):
            written += target.write_raw(raw, plan, lambda: False) or 0
        assert written == 50
        assert _count(schema) == 0
        target.rollback()
        assert _count(schema) == 0


def _look(
    target: PostgresConnector, key: str, start: Barrier, failures: list[BaseException]
) -> None:
    try:
        start.wait()
        assert target.load_position(key) is None
    except BaseException as exc:
        failures.append(exc)


def test_runs_starting_at_once_into_one_schema_all_find_their_positions(schema: str) -> None:
    # Each run's first look at its position creates `openfdi_positions` if missing. PostgreSQL's
    # CREATE TABLE IF NOT EXISTS races on its catalog: of runs starting together into one
    # schema (30 tasks over 3 hosts in tests/celery), one failed with a duplicate key on
    # pg_type. The loser must find the table the winner made instead.
    for attempt in range(5):
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{schema}".openfdi_positions')
        targets = [PostgresConnector(_content(schema)) for _ in range(8)]
        for target in targets:
            target.check()  # connected: the race is on the CREATE, not on connecting
        start = threading.Barrier(len(targets))
        failures: list[BaseException] = []

        threads = [
            threading.Thread(target=_look, args=(t, f"task-{attempt}-{i}", start, failures))
            for i, t in enumerate(targets)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for target in targets:
            target.close()
        assert failures == [], failures
