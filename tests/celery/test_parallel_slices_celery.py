"""Parallel slices under the Celery executor (issue 15, item 5): a TIMING copy with `parallelism`
is cut into key-range slices, each executed as a slice run (a child of the run) on whichever
worker claims it, the run ending with its last slice. Real RabbitMQ, PostgreSQL metadata,
`openfdi worker --executor celery` processes, a PostgreSQL source and target."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from huaweicloudsdkroma.v2 import ListMonitorLogRequest, ListTasksRequest
from prometheus_client.parser import text_string_to_metric_families

from openfdi.domain.scope import Scope
from openfdi.domain.states import RunState, RunTrigger
from openfdi.engine import celery_queue
from openfdi.engine.celery_queue import RUN_TASK, broker_owner, celery_app
from openfdi.engine.executor import LocalExecutor
from openfdi.engine.runner import EngineSettings
from openfdi.services import run_views
from openfdi.services.runs import build_spec
from openfdi.services.runtime import Runtime
from openfdi.settings import Settings
from openfdi.store import runs
from openfdi.store.tables import RunRow
from tests.celery.conftest import Workers
from tests.celery.support import (
    copy_task,
    datasource,
    fill,
    owner_pid,
    pg,
    rows_of,
    run,
    run_rows,
    slow_target,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ROWS = 100_000
PARALLELISM = 4
ACTIVE = ("starting", "running", "stopping")


def _family(rt: Runtime, task: str) -> tuple[RunRow | None, list[RunRow]]:
    """The task's one run and its slice runs (in slice order)."""
    rows = run_rows(rt, [task])
    parents = [r for r in rows if r.parent_run_id is None]
    assert len(parents) <= 1, parents
    children = sorted((r for r in rows if r.parent_run_id is not None), key=_slice)
    return (parents[0] if parents else None), children


def _slice(row: RunRow) -> int:
    assert row.slice_index is not None
    return row.slice_index


def _ended(rt: Runtime, task: str) -> tuple[RunRow, list[RunRow]] | None:
    parent, children = _family(rt, task)
    if parent is None or parent.state in ACTIVE or any(c.state in ACTIVE for c in children):
        return None
    return parent, children


def _running(rt: Runtime, task: str, count: int) -> list[RunRow] | None:
    """The slice runs once `count` of them have committed rows."""
    _, children = _family(rt, task)
    busy = [c for c in children if c.state == "running" and c.data_count > 0]
    return children if len(busy) >= count else None


def _totals(schema: str, table: str) -> tuple[int, int]:
    with pg(schema) as conn:
        count, total = conn.execute(
            f"SELECT count(*), coalesce(sum(id), 0) FROM {table}"
        ).fetchone() or (0, 0)
    return int(count), int(total)


def _assert_sums(parent: RunRow, children: list[RunRow]) -> None:
    for column in ("data_count", "dirty_data_count", "data_size_bytes", "read_ms", "write_ms"):
        assert getattr(parent, column) == sum(getattr(c, column) for c in children), column


def _runs_ended(rt: Runtime, task: str, count: int) -> list[RunRow] | None:
    """The task's runs (not slice runs) once `count` have ended and none is active."""
    rows = run_rows(rt, [task])
    if any(r.state in ACTIVE for r in rows):
        return None
    top = [r for r in rows if r.parent_run_id is None]
    return top if len(top) == count else None


def _executed_by(workers: Workers, index: int, run_id: str) -> bool:
    marker = f"run {run_id} (delivery "
    return any(
        marker in line and line.endswith(("): ended", "): step ended"))
        for line in workers.output(index).splitlines()
    )


def _outcomes(workers: Workers, run_id: str) -> list[str]:
    """What the workers did with each delivery of the run's messages (their logs)."""
    marker = f"run {run_id} (delivery "
    return [
        line.split("): ", 1)[1].strip()
        for index in range(len(workers.procs))
        for line in workers.output(index).splitlines()
        if marker in line
    ]


@pytest.mark.parametrize("step_seconds", [0.5])
@pytest.mark.parametrize("broker", ["amqp", "redis"])
def test_slices_run_on_both_workers_and_the_run_sums_them(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    pids = workers.start(2, concurrency=2)
    fill(pg_schema, ROWS)
    slow_target(pg_schema, "dst", 0.2)  # each slice lasts seconds: all four are out at once
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", parallelism=PARALLELISM)
    run(sdk, creds, task)
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=180)

    assert (parent.state, parent.data_count) == ("succeeded", ROWS), parent.remarks
    assert [c.slice_index for c in children] == list(range(PARALLELISM))
    assert {c.state for c in children} == {"succeeded"}
    assert {c.parent_run_id for c in children} == {parent.id}
    _assert_sums(parent, children)
    assert _totals(pg_schema, "dst") == (ROWS, ROWS * (ROWS + 1) // 2)
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")
    # Executed on both workers: each slice run's last owner is one of them, and each worker's
    # log shows slice runs (or steps of them) it executed.
    assert {owner_pid(c.lease_owner) for c in children} <= set(pids)
    executed = [{c.id for c in children if _executed_by(workers, index, c.id)} for index in (0, 1)]
    assert all(executed), executed
    # The parent's worker handed it over and let go of its message.
    assert _outcomes(workers, parent.id) == ["handed to 4 slice runs"]
    # Users see one run of the task.
    logs = sdk.list_monitor_log(ListMonitorLogRequest(instance_id=creds.instance_id, task_id=task))
    assert [(e.id, e.data_count) for e in logs.entities] == [(parent.id, ROWS)]
    assert logs.total == 1
    # The plan was marked done: the next run cuts a new one and copies it all again.
    run(sdk, creds, task)
    first, second = sorted(wait_for(lambda: _runs_ended(runtime, task, 2), timeout=180),
                           key=lambda r: r.created_at)  # fmt: skip
    assert (second.state, second.data_count) == ("succeeded", ROWS), second.remarks
    assert first.id == parent.id
    assert _totals(pg_schema, "dst") == (ROWS, ROWS * (ROWS + 1) // 2)


@pytest.mark.parametrize("step_seconds", [0.0])
@pytest.mark.parametrize("broker", ["amqp", "redis"])
def test_a_killed_workers_slice_is_taken_over_and_the_target_is_exact(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    """Steps off: each slice run holds its worker and its message to its end. Killing a worker
    (SIGKILL) mid-copy sends its slices' messages back to the queue (RabbitMQ: at once; Redis:
    after the visibility timeout); the survivor takes them over once their leases lapse, from
    the positions their target committed."""
    victim, survivor = workers.start(2, concurrency=2)
    fill(pg_schema, ROWS)
    slow_target(pg_schema, "dst", 0.3)
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", parallelism=PARALLELISM)
    run(sdk, creds, task)

    def victims_slice_busy() -> list[str] | None:
        _, children = _family(runtime, task)
        busy = [
            c.id
            for c in children
            if c.state == "running"
            and c.data_count > 0
            and c.lease_owner is not None
            and owner_pid(c.lease_owner) == victim
        ]
        return busy or None

    lost = wait_for(victims_slice_busy, timeout=60)
    workers.kill(0)
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=180)

    assert parent.state == "succeeded", parent.remarks
    assert _totals(pg_schema, "dst") == (ROWS, ROWS * (ROWS + 1) // 2)
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")
    _assert_sums(parent, children)
    taken = [c for c in children if c.id in lost]
    assert taken
    for child in taken:  # claimed again (a new epoch) and ended by the survivor
        assert child.state == "succeeded"
        assert child.epoch >= 2
        assert owner_pid(child.lease_owner) == survivor


@pytest.mark.parametrize("step_seconds", [0.5])
def test_duplicated_messages_of_the_slices_and_the_run_copy_nothing_twice(  # type: ignore[no-untyped-def]
    runtime: Runtime,
    workers: Workers,
    celery_settings: Settings,
    sdk,
    creds,
    signed,
    base_path,
    pg_schema,
) -> None:
    """Every message of the family published again while the slices execute (as a broker
    delivering twice would): each extra delivery claims nothing, so every row is counted (and
    written) once; the run's own message again only publishes the slices still queued."""
    workers.start(2, concurrency=2)
    fill(pg_schema, ROWS)
    slow_target(pg_schema, "dst", 0.2)
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", parallelism=PARALLELISM)
    run(sdk, creds, task)
    children = wait_for(lambda: _running(runtime, task, 1), timeout=60)
    parent, _ = _family(runtime, task)
    assert parent is not None
    app = celery_app(celery_settings)
    with app.producer_or_acquire() as producer:
        for run_id in [parent.id, *(c.id for c in children)] * 2:
            app.send_task(RUN_TASK, args=(run_id,), queue=celery_settings.celery_queue,
                          producer=producer)  # fmt: skip
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=180)

    assert (parent.state, parent.data_count) == ("succeeded", ROWS), parent.remarks
    assert sum(c.data_count for c in children) == ROWS
    assert len(children) == PARALLELISM  # the run's extra deliveries created no slice run
    assert _totals(pg_schema, "dst") == (ROWS, ROWS * (ROWS + 1) // 2)
    for child in children:
        # Every extra delivery of a slice's first message found it claimed or ended.
        extra = [o for o in _outcomes(workers, child.id) if o not in ("step ended", "ended")]
        assert extra, _outcomes(workers, child.id)
        assert set(extra) <= {"claimed elsewhere", "already succeeded"}, extra
    handed = {f"handed to {n} slice runs" for n in range(PARALLELISM + 1)}
    outcomes = _outcomes(workers, parent.id)
    assert len(outcomes) == 3, outcomes
    assert set(outcomes) <= {*handed, "already succeeded"}, outcomes


@pytest.mark.parametrize("step_seconds", [0.5])
def test_a_stop_ends_the_run_and_its_slices_within_the_deadline(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    workers.start(2, concurrency=2)
    fill(pg_schema, ROWS)
    slow_target(pg_schema, "dst", 0.3)  # a copy of a minute or so
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", parallelism=PARALLELISM)
    run(sdk, creds, task)
    wait_for(lambda: _running(runtime, task, PARALLELISM), timeout=60)

    asked = time.monotonic()
    body = {"action_id": "stop", "list": [{"task_id": task}]}
    reply = signed.post(f"{base_path}/batch-operation/tasks", json=body)
    assert reply.status_code == 200, reply.text
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=10, interval=0.02)
    took = time.monotonic() - asked
    print(f"the run and its {len(children)} slice runs ended {took:.3f} s after the stop")

    assert (parent.state, parent.remarks) == ("cancelled", "stopped")
    assert {c.state for c in children} == {"cancelled"}
    _assert_sums(parent, children)
    assert took < 1.5, f"the run and its slices ended {took:.2f} s after the stop"
    # What was committed stays, and the next run resumes every slice from its position.
    copied, _ = _totals(pg_schema, "dst")
    assert 0 < copied < ROWS
    with pg(pg_schema) as conn:
        conn.execute("DROP TRIGGER dst_slow ON dst")
    run(sdk, creds, task)

    runs_ = wait_for(lambda: _runs_ended(runtime, task, 2), timeout=120)
    _, second = sorted(runs_, key=lambda r: r.created_at)
    assert second.state == "succeeded", second.remarks
    assert second.data_count == ROWS - copied
    assert _totals(pg_schema, "dst") == (ROWS, ROWS * (ROWS + 1) // 2)


@pytest.mark.parametrize("step_seconds", [0.0])
def test_a_stop_cancels_the_slice_runs_still_queued_before_they_start(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    """One worker executing one message at a time: one slice run executes, the three others
    wait in the queue. The stop ends those there and then; their messages, delivered later,
    find them ended and start nothing."""
    workers.start(1, concurrency=1)
    fill(pg_schema, ROWS)
    slow_target(pg_schema, "dst", 0.3)
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", parallelism=PARALLELISM)
    run(sdk, creds, task)
    wait_for(lambda: _running(runtime, task, 1), timeout=60)
    body = {"action_id": "stop", "list": [{"task_id": task}]}
    reply = signed.post(f"{base_path}/batch-operation/tasks", json=body)
    assert reply.status_code == 200, reply.text
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=10, interval=0.02)

    assert parent.state == "cancelled", parent.remarks
    executed = [c for c in children if c.started_at is not None]
    queued = [c for c in children if c.started_at is None]
    assert len(executed) == 1
    assert len(queued) == PARALLELISM - 1
    for child in queued:
        assert (child.state, child.remarks) == ("cancelled", "stopped before it started")
    for child in queued:  # the worker gets to their messages after the stop: nothing to do
        wait_for(lambda c=child: _outcomes(workers, c.id), timeout=10)
        assert _outcomes(workers, child.id) == ["already cancelled"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _runs_counted(ports: list[int]) -> dict[str, float]:
    """`openfdi_runs_total` of TIMING runs by outcome, summed over the workers' metrics."""
    counted: dict[str, float] = {}
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "openfdi_runs_total" and sample.labels["task_type"] == "TIMING":
                    outcome = sample.labels["outcome"]
                    counted[outcome] = counted.get(outcome, 0.0) + sample.value
    return counted


@pytest.mark.parametrize("step_seconds", [0.5])
def test_refused_rows_of_the_slices_are_the_runs_and_the_run_is_counted_once(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    """The target refuses one row of each slice: the run's dirty-data lists the four, its counts
    are the slices' sums; the workers' metrics count one run, not five."""
    ports = [_free_port(), _free_port()]
    for port in ports:
        workers.start(1, concurrency=2, extra=("--metrics-port", str(port)))
    rows = 20_000
    fill(pg_schema, rows)
    slow_target(pg_schema, "dst", 0.1)
    refused = [2_500, 7_500, 12_500, 17_500]  # one in each quarter of the key range
    with pg(pg_schema) as conn:
        conn.execute(f"ALTER TABLE dst ADD CHECK (id NOT IN ({', '.join(map(str, refused))}))")
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", parallelism=PARALLELISM)
    run(sdk, creds, task)
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=120)

    assert parent.state == "succeeded", parent.remarks
    assert [c.dirty_data_count for c in children] == [1, 1, 1, 1]
    assert (parent.data_count, parent.dirty_data_count) == (rows - 4, 4)
    _assert_sums(parent, children)
    reply = signed.get(f"{base_path}/tasks/{task}/runs/{parent.id}/dirty-data")
    assert reply.status_code == 200, reply.text
    listed = sorted(json.loads(e["row"])[0] for e in reply.json()["entities"])
    assert (reply.json()["total"], listed) == (4, refused)
    assert _runs_counted(ports) == {"succeeded": 1.0}
    # The console's progress of the task is the run's, not its last slice run's.
    shown = run_views.progress(runtime, Scope(creds.project_id, creds.instance_id), task)
    assert (shown.run_id, shown.rows, shown.dirty) == (parent.id, rows - 4, 4)


def _slice_runs_never_published(  # type: ignore[no-untyped-def]
    runtime: Runtime, sdk, creds, signed, base_path: str, pg_schema: str
) -> tuple[str, str]:
    """A parallel copy's run (task, run id) whose worker cut the plan and created the slice
    runs, then published nothing: an executor of this test process with a broker's lease owner,
    which publishes no message, its run's own acknowledged (not in the broker at all)."""
    fill(pg_schema, ROWS)
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", parallelism=PARALLELISM)
    run_id = runs.create_run(runtime.db, task, RunTrigger.MANUAL, runtime.clock_ms())
    lost = LocalExecutor(runtime.db, runtime.registry, runtime.clock_ms,
                         settings=EngineSettings(), workers=1)  # fmt: skip
    lost.owner = broker_owner("step")
    ended: list[RunState | None] = []
    try:
        lost.submit(
            run_id, lambda: build_spec(runtime, run_id, task), on_end=lambda s, _: ended.append(s)
        )
        wait_for(lambda: ended, timeout=30)
    finally:
        lost.shutdown()
    assert ended == [RunState.RUNNING]
    return task, run_id


@pytest.mark.parametrize("step_seconds", [0.5])
def test_a_run_whose_worker_was_lost_before_publishing_its_slices_gets_them_published(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    """A worker cut the plan and created the slice runs, then was lost before publishing their
    messages (here: an executor of this test process, with a broker's lease owner, that
    publishes nothing). The run's message, delivered again, publishes them, and they run."""
    task, run_id = _slice_runs_never_published(runtime, sdk, creds, signed, base_path, pg_schema)
    view = runs.lease_view(runtime.db, run_id)
    assert view is not None
    assert view.awaits_children
    assert len(runs.queued_children(runtime.db, run_id)) == PARALLELISM

    workers.start(2, concurrency=2)
    app = celery_app(runtime.settings)
    app.send_task(RUN_TASK, args=(run_id,), queue=runtime.settings.celery_queue)
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=120)
    assert parent.id == run_id
    assert (parent.state, parent.data_count) == ("succeeded", ROWS), parent.remarks
    assert {c.state for c in children} == {"succeeded"}
    assert _outcomes(workers, run_id) == [f"handed to {PARALLELISM} slice runs"]
    assert _totals(pg_schema, "dst") == (ROWS, ROWS * (ROWS + 1) // 2)


def test_slice_runs_whose_messages_were_lost_are_published_again_by_the_server(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema, monkeypatch
) -> None:
    """A worker created the slice runs and published their messages, and the broker lost them
    (here: never published, and the run's own message acknowledged). The server publishes the
    slice runs still queued after REPUBLISH_AFTER_S (shortened here) again, and the run ends."""
    monkeypatch.setattr(celery_queue, "REPUBLISH_AFTER_S", 1.0)
    task, run_id = _slice_runs_never_published(runtime, sdk, creds, signed, base_path, pg_schema)
    assert len(runs.queued_children(runtime.db, run_id)) == PARALLELISM

    workers.start(2, concurrency=2)
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=120)
    assert (parent.state, parent.data_count) == ("succeeded", ROWS), parent.remarks
    assert {c.state for c in children} == {"succeeded"}
    assert _outcomes(workers, run_id) == []  # the run's own message was never delivered again
    assert _totals(pg_schema, "dst") == (ROWS, ROWS * (ROWS + 1) // 2)


@pytest.mark.parametrize("step_seconds", [0.5])
def test_a_failed_slice_stops_the_others_and_fails_the_run_with_its_remarks(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    """The target refuses 5,000 rows of the last slice, more than the dirty-row limit (1,000):
    that slice run fails, the others are stopped or done, and the run fails with the slice's
    reason (the stop of the siblings: test_slice_runs_store.py)."""
    workers.start(2, concurrency=2)
    fill(pg_schema, ROWS)
    with pg(pg_schema) as conn:  # no slow trigger: a refused slice is written again row-wise
        conn.execute("CREATE TABLE dst (id bigint PRIMARY KEY, body text)")
        conn.execute("ALTER TABLE dst ADD CHECK (id <= 90000 OR id > 95000)")
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", parallelism=PARALLELISM)
    run(sdk, creds, task)
    parent, children = wait_for(lambda: _ended(runtime, task), timeout=120)

    assert parent.state == "failed", parent.remarks
    failed = [c for c in children if c.state == "failed"]
    assert [c.slice_index for c in failed] == [PARALLELISM - 1]
    assert parent.remarks == f"slice {PARALLELISM - 1}: {failed[0].remarks}"
    assert "rejected by the target" in parent.remarks
    others = [c for c in children if c.state != "failed"]
    assert {c.state for c in others} <= {"cancelled", "succeeded"}
    _assert_sums(parent, children)
    # The task shows its run's outcome, not that of its newest slice run (a stopped sibling).
    listed = sdk.list_tasks(ListTasksRequest(instance_id=creds.instance_id, limit=100)).entities
    assert [t.execute_status for t in listed if t.task_id == task] == ["ERROR"]
