"""Fast paths: PostgreSQL to PostgreSQL pass-through (binary COPY bytes, never decoded).

Driven through a live server with the engine on; the connectors' pass-through methods are spied
on (the server runs in this process) to tell which path a run took.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from huaweicloudsdkroma.v2 import (
    RunTaskRequest,
    StopTaskRequest,
)

from openfdi.connectors.postgres.connector import PostgresConnector
from tests.engine.conftest import create_task, monitor_logs, wait_for
from tests.factories import unique

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"

# Every PostgreSQL type of the conformance suite whose binary form can pass through.
ALL_TYPES = """
CREATE TABLE src (
  id bigint PRIMARY KEY, i integer, s smallint, n10 numeric(10,3), n numeric,
  d double precision, r real, v varchar(12), c char(3), t text, b boolean, dt date, tm time,
  ts timestamp, tz timestamptz, by bytea, j json, jb jsonb, u uuid, iv interval
)
"""
ALL_VALUES = """
INSERT INTO src VALUES
  (1, 2147483647, -32768, 1234567.891, 0.1000000000000000000000000000001,
   0.1, 3.4028235e38, 'ünïcødé 😀', 'ab', repeat('long text ', 5000), true, '0001-01-01',
   '23:59:59.999999', '2026-01-02 03:04:05.123456', '2026-01-02 03:04:05.654321+05:30',
   '\\x00ff10', '{"b": 1, "a": [1, 2.50]}', '{"z": null}',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 year 2 days 03:04:05.000006'),
  (2, -1, 0, -0.001, -12345678901234567890.123456789,
   -1.7976931348623157e308, 1.5e-45, '', '   ', '', false, '9999-12-31', '00:00:00',
   '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '\\x', '[]', '[]',
   '00000000-0000-0000-0000-000000000000', '-1 day'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL)
"""


@pytest.fixture
def pg(pg_schema: str) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run SQL in the test's schema (committed); returns the rows of a query, else []."""

    def run(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_URL.format(schema=pg_schema), autocommit=True) as conn:
            cursor = conn.execute(sql)
            return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    return run


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts of pass-through slices written, and of slices refused (written row-wise)."""
    counts = {"raw": 0, "refused": 0}
    write_raw = PostgresConnector.write_raw

    def spy(self: PostgresConnector, *args: Any, **kwargs: Any) -> int | None:
        counts["raw"] += 1
        try:
            return write_raw(self, *args, **kwargs)
        except Exception:
            counts["refused"] += 1
            raise

    monkeypatch.setattr(PostgresConnector, "write_raw", spy)
    return counts


def _pg_datasource(signed, base_path: str, schema: str) -> str:  # type: ignore[no-untyped-def]
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": schema}  # fmt: skip
    body = {"datasource_name": unique("pg"), "datasource_type": "POSTGRESQL", "content": content}
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["datasource_id"])


def _task(sdk, creds, signed, base_path, schema: str, detail: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    ds = _pg_datasource(signed, base_path, schema)
    return create_task(sdk, creds, ds, ds, detail)


def _logs(sdk, creds, task_id: str) -> list[Any]:  # type: ignore[no-untyped-def]
    return monitor_logs(sdk, creds, task_id)


def _run(sdk, creds, task_id: str, *, nth: int = 1, timeout: float = 60) -> Any:  # type: ignore[no-untyped-def]
    """Run the task and wait for its `nth` run to finish; returns that run's monitor log."""
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    return wait_for(lambda: _finished(sdk, creds, task_id, nth), timeout=timeout)


def _finished(sdk, creds, task_id: str, nth: int) -> Any:  # type: ignore[no-untyped-def]
    logs = _logs(sdk, creds, task_id)
    if len(logs) == nth and logs[0].execute_status != "RUNNING":
        return logs[0]
    return None


def _types(pg: Callable[[str], list[tuple[Any, ...]]], table: str) -> list[tuple[Any, ...]]:
    return pg(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        f"WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )


def _same_rows(pg: Callable[[str], list[tuple[Any, ...]]], a: str, b: str) -> bool:
    # json has no equality operator: compare the text of whole rows.
    rows = f"SELECT {a}::text FROM {a} EXCEPT ALL SELECT {b}::text FROM {b}"
    query = f"SELECT count(*) FROM ({rows}) AS x"
    both = f"SELECT count(*) FROM {a}", f"SELECT count(*) FROM {b}"
    return pg(query)[0][0] == 0 and pg(both[0]) == pg(both[1])


def test_passthrough_copies_every_value_exactly(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    pg(ALL_TYPES)
    pg(ALL_VALUES)
    # A target created from logical types would turn char, jsonb, uuid and interval into other
    # types (and so take the row path): this one has exactly the source's types.
    pg("CREATE TABLE dst (LIKE src INCLUDING ALL)")
    detail = {"sourceSelectedDatasource": {"table": "src"},
              "targetSelectedDatasource": {"table": "dst"}}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 3, 0)
    assert paths == {"raw": 1, "refused": 0}  # one slice, by primary key range
    assert _types(pg, "dst") == _types(pg, "src")
    assert pg("SELECT * FROM dst ORDER BY id") == pg("SELECT * FROM src ORDER BY id")
    assert _same_rows(pg, "src", "dst")
    assert pg("SELECT to_jsonb(src) = to_jsonb(dst) FROM src JOIN dst USING (id)") == [(True,)] * 3


def test_incremental_passthrough_checkpoints_across_runs(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint, at timestamptz, note text)")
    # Many rows share each timestamp: slices must never split them.
    pg(
        "INSERT INTO src SELECT g, timestamptz '2026-01-01' + (g / 7) * interval '1 ms', 'n' || g "
        "FROM generate_series(1, 60000) g"
    )
    detail = {"sourceSelectedDatasource": {"table": "src", "incremental": {"column": "at"}},
              "targetSelectedDatasource": {"table": "dst"}}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 60000), log.remarks
    assert paths["raw"] >= 2
    assert paths["refused"] == 0
    assert _same_rows(pg, "src", "dst")

    pg(
        "INSERT INTO src SELECT g, timestamptz '2026-02-01' + g * interval '1 us', 'm' || g "
        "FROM generate_series(60001, 61000) g"
    )
    log = _run(sdk, creds, task, nth=2)
    # Insert mode: only the new rows moved, none twice.
    assert (log.execute_status, log.data_count) == ("SUCCESS", 1000), log.remarks
    assert _same_rows(pg, "src", "dst")

    log = _run(sdk, creds, task, nth=3)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 0)
    assert _same_rows(pg, "src", "dst")


def test_upsert_passthrough_updates_and_inserts(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, v varchar(20), amount numeric(12,2))")
    pg("INSERT INTO src SELECT g, 'v' || g, g / 100.0 FROM generate_series(1, 5000) g")
    pg("CREATE TABLE dst (id bigint PRIMARY KEY, v varchar(20), amount numeric(12,2))")
    pg("INSERT INTO dst SELECT g, 'old', 0 FROM generate_series(2500, 9000) g")
    detail = {"sourceSelectedDatasource": {"table": "src"},
              "targetSelectedDatasource": {"table": "dst", "writeMode": "upsert",
                                           "keyColumns": ["id"]}}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 5000), log.remarks
    assert paths["raw"] >= 1
    assert paths["refused"] == 0
    assert pg("SELECT * FROM dst WHERE id <= 5000 ORDER BY id") == pg(
        "SELECT * FROM src ORDER BY id"
    )
    assert pg("SELECT count(*) FROM dst WHERE id > 5000 AND v = 'old'") == [(4000,)]


def test_terminate_mid_passthrough_cancels_and_the_next_upsert_is_exact(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, v text, amount numeric(12,2), at timestamp)")
    total = 1_500_000
    pg(
        "INSERT INTO src SELECT g, repeat('x', 20) || g, g / 100.0, "
        f"timestamp '2026-01-01' + g * interval '1 us' FROM generate_series(1, {total}) g"
    )
    detail = {"sourceSelectedDatasource": {"table": "src"},
              "targetSelectedDatasource": {"table": "dst", "writeMode": "upsert",
                                           "keyColumns": ["id"]}}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(
        lambda: (_logs(sdk, creds, task) or [None])[0] and _logs(sdk, creds, task)[0].data_count > 0
    )
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task, 1), timeout=5)
    assert log.execute_status == "CANCELLED"
    assert 0 < log.data_count < total
    assert pg("SELECT count(*) FROM dst") == [(log.data_count,)]  # counted means committed

    log = _run(sdk, creds, task, nth=2, timeout=120)
    assert (log.execute_status, log.data_count) == ("SUCCESS", total), log.remarks
    assert _same_rows(pg, "src", "dst")
    assert paths["refused"] == 0


def test_a_type_difference_falls_back_to_the_row_path(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, amount numeric(12,2), name varchar(20))")
    pg("INSERT INTO src SELECT g, g + 0.25, 'n' || g FROM generate_series(1, 3000) g")
    pg("CREATE TABLE dst (id bigint PRIMARY KEY, total numeric(14,4), name text)")
    detail = {"sourceSelectedDatasource": {"table": "src"},
              "targetSelectedDatasource": {"table": "dst"},
              "mappingTable": [{"sourceField": "amount", "targetField": "total"}]}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 3000), log.remarks
    assert paths["raw"] == 0
    assert pg("SELECT * FROM dst ORDER BY id") == pg("SELECT * FROM src ORDER BY id")


def test_a_mapping_alone_keeps_the_passthrough(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, amount numeric(12,2), name varchar(20))")
    pg("INSERT INTO src SELECT g, g + 0.25, 'n' || g FROM generate_series(1, 3000) g")
    detail = {"sourceSelectedDatasource": {"table": "src", "columns": ["id", "amount"]},
              "targetSelectedDatasource": {"table": "dst"},
              "mappingTable": [{"sourceField": "amount", "targetField": "total"}]}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 3000), log.remarks
    assert paths["raw"] == 1
    assert pg("SELECT id, total FROM dst ORDER BY id") == pg(
        "SELECT id, amount FROM src ORDER BY id"
    )


def test_a_refused_slice_is_written_row_wise_and_bad_rows_reported(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id bigint PRIMARY KEY, amount numeric(12,2))")
    pg("INSERT INTO src SELECT g, g FROM generate_series(1, 100) g")
    pg("CREATE TABLE dst (id bigint PRIMARY KEY, amount numeric(12,2) CHECK (amount < 90))")
    detail = {"sourceSelectedDatasource": {"table": "src"},
              "targetSelectedDatasource": {"table": "dst", "writeMode": "upsert",
                                           "keyColumns": ["id"]}}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 89, 11)
    assert paths == {"raw": 1, "refused": 1}
    assert pg("SELECT id FROM dst ORDER BY id") == [(i,) for i in range(1, 90)]
    dirty = signed.get(f"{base_path}/tasks/{task}/runs/{log.id}/dirty-data", params={"limit": 50})
    body = dirty.json()
    assert body["total"] == 11
    assert json.loads(body["entities"][0]["row"])[0] == 90
    assert "check" in body["entities"][0]["reason"].lower()


def test_a_full_copy_is_sliced_by_a_uuid_primary_key(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    pg("CREATE TABLE src (id uuid PRIMARY KEY, n int)")
    pg("INSERT INTO src SELECT md5(g::text)::uuid, g FROM generate_series(1, 25000) g")
    pg("CREATE TABLE dst (LIKE src INCLUDING ALL)")
    detail = {"sourceSelectedDatasource": {"table": "src"},
              "targetSelectedDatasource": {"table": "dst"}}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 25000), log.remarks
    assert paths["raw"] >= 2
    assert paths["refused"] == 0
    assert _same_rows(pg, "src", "dst")


def test_microsecond_timestamps_keep_the_passthrough(
    sdk, creds, signed, base_path, pg_schema, pg, paths
) -> None:  # type: ignore[no-untyped-def]
    """`timestamp(6)` in the source and the created target's `timestamp` are the same on the
    wire; spelling them differently must not push the copy onto the slow row path."""
    pg("CREATE TABLE src (id bigint PRIMARY KEY, ts timestamp(6), tstz timestamptz(6))")
    pg(
        "INSERT INTO src SELECT g, '2026-01-01'::timestamp + g * interval '1.000001 second',"
        " '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 microsecond'"
        " FROM generate_series(1, 2000) g"
    )
    detail = {"sourceSelectedDatasource": {"table": "src"},
              "targetSelectedDatasource": {"table": "dst"}}  # fmt: skip
    task = _task(sdk, creds, signed, base_path, pg_schema, detail)

    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 2000), log.remarks
    assert paths["raw"] >= 1
    assert paths["refused"] == 0
    assert pg("SELECT * FROM dst ORDER BY id") == pg("SELECT * FROM src ORDER BY id")
