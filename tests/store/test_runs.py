"""Run lifecycle in the database: single flight, fencing epochs, lease expiry (both dialects)."""

from __future__ import annotations

import threading

import pytest

from openfdi.domain.states import RunState, RunTrigger
from openfdi.store import runs
from openfdi.store.tables import RunRow, TaskRow
from tests.store.test_store import _task

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
LEASE = 15_000
STOP = 4_000


def test_second_run_of_a_task_is_refused_until_the_first_ends(runtime, creds) -> None:
    task_id = _task(runtime, creds)
    first = runs.create_run(runtime.db, task_id, "manual", now_ms=1)
    with pytest.raises(runs.RunConflictError):
        runs.create_run(runtime.db, task_id, "manual", now_ms=2)
    claim = runs.claim(runtime.db, first, "worker-a", now_ms=3, lease_ms=LEASE)
    assert claim is not None
    runs.finish(runtime.db, claim, RunState.SUCCEEDED, now_ms=4)
    runs.create_run(runtime.db, task_id, "manual", now_ms=5)


def test_racing_creators_get_exactly_one_run(runtime, creds) -> None:
    task_id = _task(runtime, creds)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        try:
            runs.create_run(runtime.db, task_id, "manual", now_ms=1)
            outcomes.append("created")
        except runs.RunConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["created"]


def test_a_run_is_claimed_once(runtime, creds) -> None:
    run_id = runs.create_run(runtime.db, _task(runtime, creds), "manual", now_ms=1)
    assert runs.claim(runtime.db, run_id, "a", now_ms=2, lease_ms=LEASE) is not None
    assert runs.claim(runtime.db, run_id, "b", now_ms=2, lease_ms=LEASE) is None


def test_expired_lease_interrupts_and_fences_the_old_owner(runtime, creds) -> None:
    task_id = _task(runtime, creds)
    run_id = runs.create_run(runtime.db, task_id, "manual", now_ms=1)
    claim = runs.claim(runtime.db, run_id, "zombie", now_ms=1, lease_ms=LEASE)
    assert claim is not None
    runs.renew(runtime.db, claim, now_ms=5_000, lease_ms=LEASE)

    assert runs.expire_leases(runtime.db, now_ms=10_000, starting_grace_ms=60_000) == []
    assert runs.expire_leases(runtime.db, now_ms=30_000, starting_grace_ms=60_000) == [run_id]

    with pytest.raises(runs.FencedError):
        runs.renew(runtime.db, claim, now_ms=30_001, lease_ms=LEASE)
    with pytest.raises(runs.FencedError), runtime.db.write() as session:
        runs.record_progress(session, claim, runs.Progress(data_count=10), "WRITER")
    with pytest.raises(runs.FencedError):
        runs.finish(runtime.db, claim, RunState.SUCCEEDED, now_ms=30_002)
    with runtime.db.read() as session:
        row = session.get_one(RunRow, run_id)
        assert (row.state, row.data_count, row.epoch) == ("interrupted", 0, 2)
    # The task is free again: the next run can start.
    runs.create_run(runtime.db, task_id, RunTrigger.SUPERVISOR, now_ms=30_003)


def test_unclaimed_runs_expire_after_the_grace(runtime, creds) -> None:
    run_id = runs.create_run(runtime.db, _task(runtime, creds), "manual", now_ms=1_000)
    assert runs.expire_leases(runtime.db, now_ms=2_000, starting_grace_ms=5_000) == []
    assert runs.expire_leases(runtime.db, now_ms=7_000, starting_grace_ms=5_000) == [run_id]


def test_stop_request_is_seen_by_the_owner_and_progress_is_kept(runtime, creds) -> None:
    task_id = _task(runtime, creds)
    run_id = runs.create_run(runtime.db, task_id, "manual", now_ms=1)
    claim = runs.claim(runtime.db, run_id, "a", now_ms=1, lease_ms=LEASE)
    assert claim is not None
    with runtime.db.write() as session:
        runs.record_progress(session, claim, runs.Progress(data_count=7, read_ms=3), "WRITER")
    assert runs.request_stop(runtime.db, task_id, now_ms=8, deadline_ms=STOP) == [run_id]
    runs.finish(runtime.db, claim, RunState.CANCELLED, now_ms=9, remarks="stopped")
    with runtime.db.read() as session:
        row = session.get_one(RunRow, run_id)
        assert (row.state, row.data_count, row.remarks) == ("cancelled", 7, "stopped")
    assert runs.request_stop(runtime.db, task_id, now_ms=10, deadline_ms=STOP) == []


def test_a_stopping_run_ends_cancelled_at_its_deadline_whoever_holds_it(runtime, creds) -> None:
    task_id = _task(runtime, creds)
    run_id = runs.create_run(runtime.db, task_id, "manual", now_ms=1)
    claim = runs.claim(runtime.db, run_id, "stuck", now_ms=1, lease_ms=LEASE)
    assert claim is not None
    assert runs.request_stop(runtime.db, task_id, now_ms=100, deadline_ms=STOP) == [run_id]
    # A second stop does not postpone the first one's deadline.
    assert runs.request_stop(runtime.db, task_id, now_ms=3_000, deadline_ms=STOP) == [run_id]
    runs.renew(runtime.db, claim, now_ms=3_000, lease_ms=LEASE)  # its owner is alive, but stuck
    assert runs.expire_leases(runtime.db, now_ms=100 + STOP, starting_grace_ms=60_000) == []
    assert runs.expire_leases(runtime.db, now_ms=101 + STOP, starting_grace_ms=60_000) == [run_id]
    with runtime.db.read() as session:
        row = session.get_one(RunRow, run_id)
        assert (row.state, row.ended_at, row.position_status, row.lease_owner) == (
            "cancelled",
            101 + STOP,
            "RUNTIME_CANCEL",
            None,
        )
    with pytest.raises(runs.FencedError):  # the owner can no longer write
        runs.finish(runtime.db, claim, RunState.SUCCEEDED, now_ms=200 + STOP)
    runs.create_run(runtime.db, task_id, "manual", now_ms=200 + STOP)  # the task is free again


def test_a_stopping_run_left_without_a_deadline_is_ended(runtime, creds) -> None:
    """As earlier versions could leave one on PostgreSQL (no owner, no start time, no
    deadline): the next pass ends it, so that its task can run again."""
    task_id = _task(runtime, creds)
    run_id = runs.create_run(runtime.db, task_id, "manual", now_ms=1)
    with runtime.db.write() as session:
        session.get_one(RunRow, run_id).state = "stopping"
    assert runs.expire_leases(runtime.db, now_ms=2, starting_grace_ms=60_000) == [run_id]
    runs.create_run(runtime.db, task_id, "manual", now_ms=3)


def test_a_run_stopped_before_anyone_claimed_it_ends_cancelled_at_once(runtime, creds) -> None:
    task_id = _task(runtime, creds)
    run_id = runs.create_run(runtime.db, task_id, "manual", now_ms=1)
    assert runs.request_stop(runtime.db, task_id, now_ms=5, deadline_ms=STOP) == [run_id]
    assert runs.claim(runtime.db, run_id, "late-worker", now_ms=6, lease_ms=LEASE) is None
    with runtime.db.read() as session:
        row = session.get_one(RunRow, run_id)
        assert (row.state, row.ended_at, row.started_at) == ("cancelled", 5, None)
    runs.create_run(runtime.db, task_id, "manual", now_ms=7)  # the task is free again


def test_a_reserved_queued_run_outlives_the_start_grace_until_its_reservation_ends(
    runtime, creds
) -> None:
    first, second, third = _task(runtime, creds), _sibling(runtime, "2"), _sibling(runtime, "3")
    queued = runs.create_run(runtime.db, first, "manual", now_ms=1_000)
    forgotten = runs.create_run(runtime.db, second, "manual", now_ms=1_000)
    runs.reserve(runtime.db, [queued], "executor-a", now_ms=4_000, lease_ms=LEASE)
    assert runs.expire_leases(runtime.db, now_ms=7_000, starting_grace_ms=5_000) == [forgotten]
    assert runs.expire_leases(runtime.db, now_ms=4_000 + LEASE - 1, starting_grace_ms=5_000) == []
    claim = runs.claim(runtime.db, queued, "executor-a", now_ms=4_000 + LEASE - 1, lease_ms=LEASE)
    assert claim is not None
    assert claim.epoch == 1
    # Had the executor died instead, the reservation would have run out like a lease.
    other = runs.create_run(runtime.db, third, "manual", now_ms=1_000)
    runs.reserve(runtime.db, [other], "executor-b", now_ms=4_000, lease_ms=LEASE)
    assert runs.expire_leases(runtime.db, now_ms=4_000 + LEASE + 1, starting_grace_ms=5_000) == [
        other
    ]


def _sibling(runtime, mark: str) -> str:  # type: ignore[no-untyped-def]
    """Another task beside `_task`'s, on its data source."""
    with runtime.db.write() as session:
        task = session.get_one(TaskRow, "t" * 32)
        sibling = TaskRow(
            **{c: getattr(task, c) for c in ("project_id", "instance_id", "task_type")},
            id=mark * 32,
            name=f"task-{mark}",
            source_datasource_id=task.source_datasource_id,
            target_datasource_id=task.target_datasource_id,
            task_detail="{}",
            status=0,
            version=1,
            created_at=task.created_at,
            updated_at=task.updated_at,
        )
        session.add(sibling)
    return mark * 32


def test_executors_reserving_side_by_side_never_take_the_same_run(runtime, creds) -> None:
    tasks = [_task(runtime, creds)] + [_sibling(runtime, m) for m in "23456789"]
    created = [runs.create_run(runtime.db, t, "schedule", now_ms=i) for i, t in enumerate(tasks)]
    taken: dict[str, list[str]] = {}
    barrier = threading.Barrier(3)

    def reserve(owner: str) -> None:
        barrier.wait()
        mine: list[str] = []
        while batch := runs.reserve_unclaimed(runtime.db, owner, 2, now_ms=100, lease_ms=LEASE):
            mine += [run_id for run_id, _ in batch]
        taken[owner] = mine

    threads = [threading.Thread(target=reserve, args=(f"executor-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [run_id for mine in taken.values() for run_id in mine]
    assert sorted(everything) == sorted(created)  # each run once, none left behind
    assert runs.reserve_unclaimed(runtime.db, "late", 5, now_ms=200, lease_ms=LEASE) == []
    # Reserved runs are still claimable (by their executor) and not closed as never claimed.
    assert runs.expire_leases(runtime.db, now_ms=10_000, starting_grace_ms=5_000) == []
    assert runs.claim(runtime.db, created[0], "executor-0", now_ms=300, lease_ms=LEASE)
