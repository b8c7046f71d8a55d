"""The executor's bounded pool: runs beyond `OPENFDI_RUN_WORKERS` wait in a queue, unclaimed
(so their start time is honest), can be stopped there, and run once a worker is free.

A PostgreSQL table locked by the test holds the only worker deterministically: no timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from huaweicloudsdkroma.v2 import RunTaskRequest, StopTaskRequest
from sqlalchemy import select

from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.store.tables import RunRow
from tests.conftest import make_settings
from tests.engine.conftest import wait_for
from tests.engine.test_runs import PG_URL, UPSERT, _datasource, _finished, _orders, _rows, _task
from tests.factories import unique


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = make_settings(tmp_path / "data", engine=True).model_copy(update={"run_workers": 1})
    rt = Runtime.open(settings)
    identity.bootstrap(rt)
    yield rt
    rt.close()


def _runs(runtime: Runtime, task_id: str) -> list[RunRow]:
    with runtime.db.read() as session:
        query = select(RunRow).where(RunRow.task_id == task_id).order_by(RunRow.created_at)
        return list(session.scalars(query))


def test_runs_beyond_the_pool_queue_unclaimed_can_be_stopped_and_run_later(
    runtime, sdk, creds, signed, base_path, pg_schema, sqlite_file
) -> None:
    with psycopg.connect(PG_URL.format(schema=pg_schema), autocommit=True) as conn:
        conn.execute("CREATE TABLE held (id bigint primary key, name text)")
        conn.execute("INSERT INTO held SELECT g, 'row ' || g FROM generate_series(1, 3) g")
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": pg_schema}  # fmt: skip
    body = {"datasource_name": unique("pg"), "datasource_type": "POSTGRESQL", "content": content}
    pg_source = signed.post(f"{base_path}/datasources", json=body).json()["datasource_id"]
    src = sqlite_file("src")
    _orders(src, range(1, 11))
    holding_detail = {
        "sourceSelectedDatasource": {"table": "held"},
        "targetSelectedDatasource": {"table": "held_copy"},
    }
    holding = _task(
        sdk, creds, pg_source, _datasource(sdk, creds, sqlite_file("a")), "TIMING", holding_detail
    )
    dst = sqlite_file("b")
    queued = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "TIMING", UPSERT
    )

    with psycopg.connect(PG_URL.format(schema=pg_schema)) as lock:
        lock.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=holding))
        wait_for(lambda: _runs(runtime, holding)[0].state == "running")
        # A worker process asks for as many runs as it has room for: one per free thread,
        # plus one queued ahead per thread.
        assert runtime.executor.room() == 1

        sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=queued))
        time.sleep(1.0)  # ample time for a free worker to have claimed it
        (waiting,) = _runs(runtime, queued)
        assert (waiting.state, waiting.started_at) == ("starting", None)
        assert runtime.executor.room() == 0

        sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=queued))
        (stopped,) = _runs(runtime, queued)
        assert (stopped.state, stopped.started_at, stopped.data_count) == ("cancelled", None, 0)
        assert stopped.remarks == "stopped before it started"

        sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=queued))
        assert _runs(runtime, queued)[-1].state == "starting"
    # The lock is released: the held run finishes, then the queued one gets the worker.
    held = wait_for(lambda: _finished(sdk, creds, holding), timeout=30)
    assert (held.execute_status, held.data_count) == ("SUCCESS", 3), held.remarks
    done = wait_for(lambda: _finished(sdk, creds, queued), timeout=30)
    assert (done.execute_status, done.data_count) == ("SUCCESS", 10), done.remarks
    assert _rows(dst, "orders_copy") == _rows(src, "orders")
    first, second = _runs(runtime, queued)
    assert first.state == "cancelled"
    assert second.state == "succeeded"
    assert second.started_at >= _runs(runtime, holding)[0].ended_at
