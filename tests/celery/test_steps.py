"""Runs executed as bounded steps by Celery workers (OPENFDI_CELERY_STEP_SECONDS): a REALTIME run
and a large copy go on as a chain of steps of one run (its id kept, its epoch growing, its counts
cumulative), each step a broker message of its own; a killed worker costs one step; a stop ends
the run whether it is in a step or between two."""

from __future__ import annotations

import time
from typing import Any

import pytest

from openfdi.domain.states import RunState, RunTrigger
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from tests.celery.conftest import Workers
from tests.celery.support import (
    copy_task,
    datasource,
    ended,
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
STEPS = pytest.mark.parametrize("step_seconds", [0.5])
STEP_OWNER = "celery:step:test-host:1:0123abcd"


def _batch(signed: Any, base_path: str, action: str, task: str) -> None:
    body = {"action_id": action, "list": [{"task_id": task}]}
    reply = signed.post(f"{base_path}/batch-operation/tasks", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["success_count"] == 1, reply.text


def _only_run(rt: Runtime, task: str) -> Any:
    (row,) = run_rows(rt, [task])
    return row


def _held_by(rt: Runtime, task: str, pid: int) -> bool:
    """Whether the task's run is in a step on the worker process `pid`."""
    owner = _only_run(rt, task).lease_owner
    return owner not in (None, runs.HANDOFF_OWNER) and owner_pid(owner) == pid


def _step_outcomes(workers: Workers, run_id: str) -> list[str]:
    """What the workers did with each delivery of the run's messages (their logs)."""
    marker = f"run {run_id} (delivery {run_id}): "
    return [
        line.split(marker, 1)[1].strip()
        for index in range(len(workers.procs))
        for line in workers.output(index).splitlines()
        if marker in line
    ]


@STEPS
@pytest.mark.parametrize("broker", ["amqp", "redis"])
def test_a_realtime_run_follows_its_source_as_a_chain_of_steps_then_stops(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    pids = workers.start(2, concurrency=2)
    fill(pg_schema, 100)
    slow_target(pg_schema, "dst", 0.0)
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", task_type="REALTIME", incremental=True)
    _batch(signed, base_path, "start", task)
    wait_for(lambda: len(rows_of(pg_schema, "dst")) == 100, timeout=60)
    first = _only_run(runtime, task)

    owners: set[int] = set()
    for total in (200, 300, 400, 500):
        fill(pg_schema, total)  # new rows while it follows, across several steps
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            owner = _only_run(runtime, task).lease_owner
            if owner != runs.HANDOFF_OWNER:
                owners.add(owner_pid(owner))
            time.sleep(0.05)
    wait_for(lambda: rows_of(pg_schema, "dst") == rows_of(pg_schema, "src"), timeout=30)
    wait_for(lambda: _only_run(runtime, task).epoch >= first.epoch + 6, timeout=30)
    following = _only_run(runtime, task)  # still the one run, claimed again by each step
    assert (following.id, following.state) == (first.id, "running")
    assert following.data_count == 500  # the steps' totals add up to the run's, each row once
    assert owners == set(pids), owners  # its steps went to both workers
    assert _step_outcomes(workers, first.id).count("step ended") >= 6

    asked = time.time()  # a stop lands in a step (steps are 0.5 s, hand-offs milliseconds)
    _batch(signed, base_path, "stop", task)
    (stopped,) = wait_for(lambda: ended(runtime, [task]), timeout=10)
    assert stopped.ended_at / 1000 - asked < runtime.settings.stop_deadline_seconds + 1.0
    assert (stopped.id, stopped.state) == (first.id, "cancelled"), stopped.remarks
    time.sleep(1.5)  # no step runs after the stop: neither its epoch nor its counts move
    after = _only_run(runtime, task)
    assert (after.state, after.epoch, after.data_count) == ("cancelled", stopped.epoch, 500)
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")


@STEPS
def test_a_killed_worker_costs_one_step_of_a_realtime_run(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    pids = workers.start(2, concurrency=1)
    fill(pg_schema, 40_000)
    slow_target(pg_schema, "dst", 0.3)  # batches of 5,000 rows: steps with work in them
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", task_type="REALTIME", incremental=True)
    _batch(signed, base_path, "start", task)

    def in_a_step() -> Any:
        rows = run_rows(runtime, [task])  # none until the supervisor starts it
        busy = [r for r in rows if r.state == "running" and r.data_count]
        return busy[0] if busy and busy[0].lease_owner != runs.HANDOFF_OWNER else None

    running = wait_for(in_a_step, timeout=60)
    assert running.data_count < 40_000
    victim = pids.index(owner_pid(running.lease_owner))
    workers.kill(victim)  # mid-step: its message goes back to the queue, unacknowledged

    wait_for(lambda: rows_of(pg_schema, "dst") == rows_of(pg_schema, "src"), timeout=60)
    fill(pg_schema, 45_000)  # and it keeps following, on the survivor
    wait_for(lambda: rows_of(pg_schema, "dst") == rows_of(pg_schema, "src"), timeout=60)
    following = _only_run(runtime, task)
    assert (following.id, following.state) == (running.id, "running"), following.remarks
    assert following.epoch > running.epoch
    wait_for(lambda: _only_run(runtime, task).lease_owner != runs.HANDOFF_OWNER)
    assert owner_pid(_only_run(runtime, task).lease_owner) == pids[1 - victim]
    # Taken over from the checkpoint (the target's committed position): each row counted once.
    assert following.data_count == 45_000

    # A worker shut down (SIGTERM) hands its step over at a batch boundary instead of
    # interrupting the run: a third worker takes the next one.
    (third,) = workers.start(1, concurrency=1)
    survivor = workers.procs[1 - victim]
    wait_for(lambda: _held_by(runtime, task, survivor.pid))
    survivor.terminate()  # in a step: the steps go to both workers in turn
    assert survivor.wait(30) == 0
    fill(pg_schema, 50_000)
    wait_for(lambda: rows_of(pg_schema, "dst") == rows_of(pg_schema, "src"), timeout=60)
    handed = _only_run(runtime, task)
    assert (handed.id, handed.state, handed.data_count) == (running.id, "running", 50_000)
    wait_for(lambda: _only_run(runtime, task).lease_owner != runs.HANDOFF_OWNER)
    assert owner_pid(_only_run(runtime, task).lease_owner) == third

    _batch(signed, base_path, "stop", task)
    (stopped,) = wait_for(lambda: ended(runtime, [task]), timeout=10)
    assert stopped.state == "cancelled", stopped.remarks
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")


@STEPS
@pytest.mark.parametrize("kind", ["incremental", "sliced", "full", "unkeyed"])
def test_a_large_timing_copy_runs_as_steps_when_it_can_resume(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema, kind
) -> None:
    """Incremental, sliced and whole-table copies of a keyed table (the last as one key-range
    slice) resume past what they committed, so they execute as steps; a table without a key
    cannot, and holds its message to the end."""
    workers.start(2, concurrency=2)
    if kind == "unkeyed":
        with pg(pg_schema) as conn:
            conn.execute("CREATE TABLE src (id bigint NOT NULL, body text)")
    fill(pg_schema, 40_000)
    slow_target(pg_schema, "dst", 0.3)  # 8 batches of 5,000 rows (4 per slice): 2.4 s or more
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(
        sdk,
        creds,
        ds,
        "dst",
        incremental=kind == "incremental",
        parallelism=2 if kind == "sliced" else 1,
    )
    run(sdk, creds, task)
    if kind == "sliced":
        # Its two slices execute as slice runs of the run (test_parallel_slices_celery.py),
        # each as steps.
        family = wait_for(lambda: ended(runtime, [task], count=3), timeout=90)
        (done,) = [r for r in family if r.parent_run_id is None]
        assert (done.state, done.data_count) == ("succeeded", 40_000), done.remarks
        assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")
        assert _step_outcomes(workers, done.id) == ["handed to 2 slice runs"]
        for part in (r for r in family if r.parent_run_id is not None):
            outcomes = _step_outcomes(workers, part.id)
            assert part.epoch >= 2, outcomes
            assert sorted(outcomes) == ["ended"] + ["step ended"] * (part.epoch - 1)
        return
    (done,) = wait_for(lambda: ended(runtime, [task]), timeout=90)
    assert (done.state, done.data_count) == ("succeeded", 40_000), done.remarks
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")
    outcomes = _step_outcomes(workers, done.id)
    if kind == "unkeyed":  # no key to resume past what it committed: one message, whole
        assert (done.epoch, outcomes) == (1, ["ended"])
    else:
        assert done.epoch >= 3, outcomes  # steps, each claiming the run again
        assert sorted(outcomes) == ["ended"] + ["step ended"] * (done.epoch - 1)


def test_a_run_between_steps_goes_to_its_next_step_only_or_ends_when_stopped(  # type: ignore[no-untyped-def]
    runtime: Runtime, sdk, creds, signed, base_path, pg_schema
) -> None:
    """The store's hand-off, claim and stop, as workers and a stop race over them."""
    db, now, lease = runtime.db, runtime.clock_ms(), 10_000
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst")
    run_id = runs.create_run(db, task, RunTrigger.MANUAL, now)

    step1 = runs.claim(db, run_id, STEP_OWNER, now, lease)
    assert step1 is not None
    assert step1.epoch == 1
    moved = runs.Checkpoint(task, runs.Progress(data_count=7, dirty_data_count=1), None, [])
    runs.commit_progress(db, step1, moved, now)
    assert runs.hand_off(db, step1, now) is RunState.RUNNING
    with pytest.raises(runs.FencedError):  # a renewal racing the hand-off takes nothing back
        runs.renew(db, step1, now, lease)
    # A duplicate of the first step's message (published after epoch 0) finds it handed off.
    assert runs.claim(db, run_id, STEP_OWNER, now, lease, after=0) is None
    step2 = runs.claim(db, run_id, STEP_OWNER, now, lease, after=1)
    assert step2 is not None
    assert step2.epoch == 2
    assert step2.progress == runs.Progress(7, 1, 0, 0, 0)  # the run's totals go on
    assert runs.claim(db, run_id, STEP_OWNER, now, lease, after=1) is None  # one claim wins
    assert runs.hand_off(db, step2, now) is RunState.RUNNING

    # A stop between two steps ends the run there and then; the next step finds nothing.
    assert runs.request_stop(db, task, now, 1_000) == [run_id]
    row = _only_run(runtime, task)
    assert (row.state, row.remarks, row.epoch) == ("cancelled", "stopped between two steps", 3)
    assert (row.data_count, row.lease_expires_at) == (7, None)
    assert runs.claim(db, run_id, STEP_OWNER, now, lease, after=2) is None

    # A stop during a step: the step's hand-off ends the run instead.
    run_id = runs.create_run(db, task, RunTrigger.MANUAL, now)
    step = runs.claim(db, run_id, STEP_OWNER, now, lease)
    assert step is not None
    assert runs.request_stop(db, task, now, 1_000) == [run_id]
    assert runs.hand_off(db, step, now) is RunState.CANCELLED
    stopped = runs.lease_view(db, run_id)
    assert stopped is not None
    assert stopped.state is RunState.CANCELLED

    # A step's owner lost: its lease lapses, and any message of the run takes it over.
    later = now + lease + 10
    run_id = runs.create_run(db, task, RunTrigger.SUPERVISOR, now)
    assert runs.claim(db, run_id, STEP_OWNER, now, lease) is not None
    assert runs.claim(db, run_id, STEP_OWNER, now + 10, lease) is None  # its lease is live
    taken = runs.claim(db, run_id, STEP_OWNER, later, lease, after=0)
    assert taken is not None
    assert taken.epoch == 2
    runs.finish(db, taken, RunState.SUCCEEDED, later)
    # A supervisor's run executed whole is not taken over: its message was acknowledged.
    run_id = runs.create_run(db, task, RunTrigger.SUPERVISOR, now)
    assert runs.claim(db, run_id, "celery:run:test-host:1:0123abcd", now, lease) is not None
    assert runs.claim(db, run_id, STEP_OWNER, later, lease) is None
