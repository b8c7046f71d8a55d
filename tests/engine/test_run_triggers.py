"""`run` copies what is there and ends; `stop` ends what is running; the supervisor follows the
source for started REALTIME tasks only and ignores manual runs (docs/runs.md). Through the SDK.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    OperateTasksBean,
    RunTaskRequest,
    TaskBean,
)
from sqlalchemy import select

from openfdi.store.tables import RunRow
from tests.engine.conftest import wait_for
from tests.engine.test_runs import UPSERT, _datasource, _finished, _logs, _orders, _rows, _task

LIVE = {
    "sourceSelectedDatasource": {"table": "orders", "incremental": {"column": "id"}},
    "targetSelectedDatasource": {"table": "orders_live"},
}


def _batch(sdk, creds, action: str, task: str) -> None:  # type: ignore[no-untyped-def]
    reply = sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(action_id=action, list=[TaskBean(task_id=task)]),
        )
    )
    assert reply.success_count == 1


def _runs(runtime, task: str, *columns: Any) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    """`columns` of the task's runs, oldest first."""
    with runtime.db.read() as session:
        rows = session.execute(
            select(*columns).where(RunRow.task_id == task).order_by(RunRow.created_at)
        ).all()
    return [tuple(row) for row in rows]


def _triggers(runtime, task: str) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    """(trigger, state) of each run."""
    return _runs(runtime, task, RunRow.trigger, RunRow.state)


def test_a_manual_run_of_a_stopped_realtime_task_copies_what_is_there_and_ends(
    sdk, creds, sqlite_file
) -> None:
    src, dst = sqlite_file("src"), sqlite_file("dst")
    _orders(src, range(1, 101))
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "REALTIME", LIVE
    )

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=15)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 100), log.remarks
    _orders(src, range(101, 111))
    time.sleep(1.0)  # several poll intervals: nothing follows the source now
    assert len(_rows(dst, "orders_live")) == 100

    # The next manual run catches up from the checkpoint, once more.
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(lambda: len(_logs(sdk, creds, task)) == 2 and _finished(sdk, creds, task))
    assert [r[0] for r in _rows(dst, "orders_live")] == list(range(1, 111))


def test_batch_stop_ends_a_manual_run_of_a_stopped_task(sdk, creds, sqlite_file) -> None:
    src, dst = sqlite_file("src"), sqlite_file("dst")
    _orders(src, range(1, 300_001))
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "TIMING", UPSERT
    )

    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(
        lambda: (_logs(sdk, creds, task) or [None])[0] and _logs(sdk, creds, task)[0].data_count > 0
    )
    _batch(sdk, creds, "stop", task)  # the task is stopped already: its run ends all the same
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=10)
    assert log.execute_status == "CANCELLED", (log.execute_status, log.data_count)
    assert 0 < log.data_count < 300_000


def test_the_supervisor_ignores_manual_runs(sdk, creds, sqlite_file, runtime) -> None:
    """A started REALTIME task whose run failed is resumed by the supervisor even after a
    manual run of it succeeded meanwhile; only the supervisor's run follows the source."""
    src, dst = sqlite_file("src"), sqlite_file("dst")
    task = _task(
        sdk, creds, _datasource(sdk, creds, src), _datasource(sdk, creds, dst), "REALTIME", LIVE
    )
    _batch(sdk, creds, "start", task)  # no source table yet: its run fails
    wait_for(lambda: _finished(sdk, creds, task), timeout=15)
    assert [state for _, state in _triggers(runtime, task)] == ["failed"]

    _orders(src, range(1, 51))
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))
    wait_for(lambda: [s for _, s in _triggers(runtime, task)][1:] == ["succeeded"], timeout=15)
    assert len(_rows(dst, "orders_live")) == 50

    # After its back-off (5 s from the failure), the supervisor starts the following run.
    wait_for(lambda: _triggers(runtime, task)[-1] == ("supervisor", "running"), timeout=20)
    assert _triggers(runtime, task)[:2] == [("supervisor", "failed"), ("manual", "succeeded")]
    _orders(src, range(51, 61))
    wait_for(lambda: len(_rows(dst, "orders_live")) == 60)
    _batch(sdk, creds, "stop", task)
    wait_for(lambda: _finished(sdk, creds, task), timeout=10)
    with sqlite3.connect(dst) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM orders_live ORDER BY id")]
    assert ids == list(range(1, 61))


def test_a_batch_start_starts_the_following_runs_before_it_answers(
    sdk, creds, sqlite_file, runtime
) -> None:
    """The supervisor would start them at its next pass, up to its interval later; the batch
    start does it at once (the first quarter of a second of every started task, the composite
    tasks' snapshot included). Ten tasks in one batch: each has its run when the call returns."""
    src = _datasource(sdk, creds, sqlite_file("src"))
    dst = _datasource(sdk, creds, sqlite_file("dst"))
    tasks = [_task(sdk, creds, src, dst, "REALTIME", LIVE) for _ in range(10)]
    reply = sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(action_id="start", list=[TaskBean(task_id=t) for t in tasks]),
        )
    )
    assert reply.success_count == 10
    assert all(
        _triggers(runtime, t)[:1] and _triggers(runtime, t)[0][0] == "supervisor" for t in tasks
    )
    for task in tasks:  # one run each: the supervisor's pass found them started
        wait_for(lambda t=task: _finished(sdk, creds, t), timeout=15)  # no source table: failed
        assert len(_triggers(runtime, task)) == 1
    sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(action_id="stop", list=[TaskBean(task_id=t) for t in tasks]),
        )
    )
