"""kill -9 of the server while a copy runs as parallel key-range slices, then a restart and a
rerun, all through the official SDK: every slice resumes from the position its target committed,
so a plain insert into a table without a key ends with every row exactly once. And a stop through
the SDK ends every slice within the deadline, the next run completing the copy.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkroma.v2 import (
    CreateCommonTaskRequest,
    CreateCommonTaskRequestBody,
    ListMonitorLogRequest,
    RomaClient,
    RunTaskRequest,
    StopTaskRequest,
    TaskBasicRequestBody,
)

from openfdi.client import signed_client
from openfdi.engine import slices
from tests.e2e.process import Served
from tests.e2e.test_crash import AK, BASE, ENV, INSTANCE, PROJECT, SK
from tests.factories import unique
from tests.services import PG_ADMIN_URL, require

pytestmark = pytest.mark.slow

ROWS = 2_000_000
PARALLELISM = 4


@pytest.fixture
def schema() -> Iterator[str]:
    require("postgres")
    name = f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _pg(sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def _wait(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"not reached in {timeout} s")


def _sdk(served: Served) -> RomaClient:
    credentials = BasicCredentials(ak=AK, sk=SK, project_id=PROJECT)
    return (
        RomaClient.new_builder().with_credentials(credentials).with_endpoints([served.url]).build()
    )


def _logs(sdk: RomaClient, task: str) -> list[Any]:
    reply = sdk.list_monitor_log(ListMonitorLogRequest(instance_id=INSTANCE, task_id=task))
    return list(reply.entities)


def _task(sdk: RomaClient, served: Served, schema: str) -> str:
    # The SDK's Content has no `schema` (openfdi's own key): the data source is created with
    # openfdi's signed client, everything else through the SDK.
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": schema}  # fmt: skip
    with signed_client(served.url, AK, SK, PROJECT) as client:
        reply = client.post(
            f"{BASE}/datasources",
            json={"datasource_name": unique("pg"), "datasource_type": "POSTGRESQL",
                  "content": content},
        )  # fmt: skip
    assert reply.status_code == 201, reply.text
    ds = str(reply.json()["datasource_id"])
    detail = {
        "sourceSelectedDatasource": {"table": "events"},
        "targetSelectedDatasource": {"table": "copy"},  # a plain insert
        "parallelism": PARALLELISM,
    }
    body = CreateCommonTaskRequestBody(
        task=TaskBasicRequestBody(
            task_name=unique("sliced"),
            task_type="TIMING",
            source_datasource_id=ds,
            target_datasource_id=ds,
        ),
        task_detail=json.dumps(detail),
    )
    reply = sdk.create_common_task(CreateCommonTaskRequest(instance_id=INSTANCE, body=body))
    return str(reply.task.task_id)


def _slice_states(schema: str, task: str) -> list[dict[str, Any] | None]:
    if _pg(f"SELECT to_regclass('\"{schema}\".openfdi_positions')") == [(None,)]:
        return [None] * PARALLELISM
    stored = dict(_pg(f'SELECT task_id, position FROM "{schema}".openfdi_positions'))
    return [
        json.loads(stored[key]) if key in stored else None
        for key in (slices.slice_key(task, i) for i in range(PARALLELISM))
    ]


def _rows_up_to_positions(schema: str, task: str, states: list[dict[str, Any] | None]) -> int:
    stored = dict(_pg(f'SELECT task_id, position FROM "{schema}".openfdi_positions'))
    plan = slices.decode_plan(stored[slices.plan_key(task)])
    assert plan is not None
    assert len(plan.ranges) == len(states)
    covered = 0
    for key_range, state in zip(plan.ranges, states, strict=True):
        if state is None or state["at"] is None:
            continue
        after = "" if key_range.after is None else f"id > {key_range.after} AND "
        sql = f'SELECT count(*) FROM "{schema}".events WHERE {after}id <= {state["at"]}'
        covered += int(_pg(sql)[0][0])
    return covered


def _fill(schema: str) -> int:
    _pg(f'CREATE TABLE "{schema}".events (id bigint PRIMARY KEY, body text, amount numeric(12,2))')
    # Negative keys and a gap: the ranges are cut by key value.
    _pg(
        f"INSERT INTO \"{schema}\".events SELECT g, repeat('x', 20) || g, g / 100.0 "
        f"FROM generate_series(-{ROWS // 2}, {ROWS // 2 + 100_000}) g "
        f"WHERE g NOT BETWEEN 10000 AND 109999"
    )
    # No key on the target: a row written twice shows as a duplicate.
    _pg(f'CREATE TABLE "{schema}".copy (id bigint, body text, amount numeric(12,2))')
    return int(_pg(f'SELECT count(*) FROM "{schema}".events')[0][0])


def _exact(schema: str, total: int) -> None:
    duplicates = _pg(
        f'SELECT id, count(*) FROM "{schema}".copy GROUP BY id HAVING count(*) > 1 LIMIT 5'
    )
    assert duplicates == []
    missing = _pg(
        f'SELECT count(*) FROM "{schema}".events e '
        f'WHERE NOT EXISTS (SELECT 1 FROM "{schema}".copy c WHERE c.id = e.id '
        "AND c.body = e.body AND c.amount = e.amount)"
    )
    assert missing == [(0,)]
    assert _pg(f'SELECT count(*) FROM "{schema}".copy') == [(total,)]


def test_a_stop_through_the_sdk_ends_every_slice_within_the_deadline(
    tmp_path: Path, schema: str
) -> None:
    total = _fill(schema)
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    try:
        sdk = _sdk(served)
        task = _task(sdk, served, schema)
        sdk.run_task(RunTaskRequest(instance_id=INSTANCE, task_id=task))
        _wait(
            lambda: all(s is not None and s["at"] is not None for s in _slice_states(schema, task)),
            interval=0.02,
        )
        asked_ms = time.time() * 1000
        sdk.stop_task(StopTaskRequest(instance_id=INSTANCE, task_id=task))
        stopped = _wait(
            lambda: _logs(sdk, task)[0].execute_status != "RUNNING" and _logs(sdk, task)
        )
        assert stopped[0].execute_status == "CANCELLED", stopped[0].remarks
        latency_ms = stopped[0].end_time - asked_ms
        assert latency_ms < 1000, f"the slices took {latency_ms:.0f} ms to stop"
        copied = int(_pg(f'SELECT count(*) FROM "{schema}".copy')[0][0])
        assert 0 < copied < total
        assert stopped[0].data_count == copied  # counted means committed, and only that
        sdk.run_task(RunTaskRequest(instance_id=INSTANCE, task_id=task))
        logs = _wait(
            lambda: (
                len(found := _logs(sdk, task)) == 2
                and found[0].execute_status != "RUNNING"
                and found
            ),
            180,
        )
        assert logs[0].execute_status == "SUCCESS", logs[0].remarks
        assert logs[0].data_count == total - copied
    finally:
        if served.proc is not None:
            served.stop()
    _exact(schema, total)


def test_kill_during_a_sliced_copy_then_rerun_copies_every_row_once(
    tmp_path: Path, schema: str
) -> None:
    total = _fill(schema)

    def copied() -> int:
        return int(_pg(f'SELECT count(*) FROM "{schema}".copy')[0][0])

    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    try:
        sdk = _sdk(served)
        task = _task(sdk, served, schema)
        sdk.run_task(RunTaskRequest(instance_id=INSTANCE, task_id=task))
        # Every slice has committed something, and a good part of the rows is in.
        _wait(
            lambda: (
                all(s is not None and s["at"] is not None for s in _slice_states(schema, task))
                and copied() > 200_000
            ),
            interval=0.02,
        )
        served.kill()
        time.sleep(0.5)  # a COMMIT the dead server had sent is still carried out
        before = copied()
        states = _slice_states(schema, task)
        assert 0 < before < total, "the kill must land mid-copy"
        assert not all(s is not None and s["done"] for s in states), states
        # Each slice's position was committed with its rows: the rows in the target are
        # exactly those of the slices' ranges up to their positions.
        assert before == _rows_up_to_positions(schema, task, states)

        served.start()
        sdk = _sdk(served)
        first = _wait(lambda: _logs(sdk, task)[0].execute_status != "RUNNING" and _logs(sdk, task))
        assert first[0].execute_status == "ERROR"
        assert "interrupted" in (first[0].remarks or "")
        sdk.run_task(RunTaskRequest(instance_id=INSTANCE, task_id=task))
        logs = _wait(
            lambda: (
                len(found := _logs(sdk, task)) == 2
                and found[0].execute_status != "RUNNING"
                and found
            ),
            180,
        )
        rerun = logs[0]
        assert rerun.execute_status == "SUCCESS", rerun.remarks
        # The rerun copied only what the killed run had not committed.
        assert rerun.data_count == total - before
    finally:
        if served.proc is not None:
            served.stop()
    _exact(schema, total)
