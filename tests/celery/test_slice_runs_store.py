"""Slice runs in the metadata database (store/runs.py), on both metadata dialects: a parallel
copy's run hands itself to child runs, which single flight ignores; the last child to end ends
the parent with the totals summed, exactly once when two end at the same moment; a failed
slice stops its siblings and fails the parent; a stop of the parent reaches its children."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from openfdi.domain.states import RunState, RunTrigger
from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.db import Database
from openfdi.store.tables import RunRow
from tests.conftest import make_settings
from tests.store.test_store import _task

LEASE = 15_000
OWNER = "celery:step:test-host:1:0123abcd"


@pytest.fixture(params=["sqlite", "postgres"])
def runtime(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """The metadata database alone (no broker, no engine): this file's tests are the store's."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    rt = Runtime.open(make_settings(tmp_path / "data", url, engine=False))
    identity.bootstrap(rt)
    yield rt
    rt.close()


def _row(rt: Runtime, run_id: str) -> RunRow:
    with rt.db.read() as session:
        row = session.get(RunRow, run_id)
        assert row is not None
        session.expunge(row)
    return row


def _family(rt: Runtime, task_id: str, slices: int = 2) -> tuple[runs.Claim, list[runs.Claim]]:
    """A claimed run handed to `slices` children, each claimed: (parent's claim, children's)."""
    db = rt.db
    run_id = runs.create_run(db, task_id, RunTrigger.MANUAL, 1)
    parent = runs.claim(db, run_id, OWNER, 2, LEASE)
    assert parent is not None
    ids = runs.create_children(db, parent, list(range(slices)), 3)
    assert ids is not None
    assert runs.queued_children(db, run_id) == ids
    children = [runs.claim(db, child, OWNER, 4, LEASE) for child in ids]
    assert all(c is not None for c in children)
    return parent, [c for c in children if c is not None]


def test_children_are_outside_single_flight_and_claimed_as_runs(runtime: Runtime, creds) -> None:  # type: ignore[no-untyped-def]
    db = runtime.db
    task_id = _task(runtime, creds)
    parent, (first, second) = _family(runtime, task_id)
    assert (first.parent_run_id, first.slice_index) == (parent.run_id, 0)
    assert (second.parent_run_id, second.slice_index) == (parent.run_id, 1)
    assert runs.claim(db, first.run_id, OWNER, 5, LEASE) is None  # a duplicate message
    view = runs.lease_view(db, parent.run_id)
    assert view is not None
    assert view.awaits_children
    assert runs.queued_children(db, parent.run_id) == []
    # Three active rows of one task, yet a second run of the task is refused all the same.
    with pytest.raises(runs.RunConflictError):
        runs.create_run(db, task_id, RunTrigger.MANUAL, 6)
    # Nobody executes the parent: no lease to lapse, and its own claim is over.
    with pytest.raises(runs.FencedError):
        runs.renew(db, parent, 7, LEASE)


def test_the_last_child_ends_the_parent_with_the_totals_summed(runtime: Runtime, creds) -> None:  # type: ignore[no-untyped-def]
    db = runtime.db
    task_id = _task(runtime, creds)
    parent, (first, second) = _family(runtime, task_id)
    for claim, rows in ((first, 10), (second, 32)):
        moved = runs.Checkpoint(task_id, runs.Progress(rows, 1, rows * 10, 5, 7), None, [])
        runs.commit_progress(db, claim, moved, 5)
    seen: list[RunState] = []
    assert runs.finish(db, first, RunState.SUCCEEDED, 6, before_parent_ends=seen.append) is None
    assert _row(runtime, parent.run_id).state == "running"
    end = runs.finish(db, second, RunState.SUCCEEDED, 9, before_parent_ends=seen.append)
    assert end == runs.ParentEnd(parent.run_id, RunState.SUCCEEDED, 7)
    assert seen == [RunState.SUCCEEDED]
    row = _row(runtime, parent.run_id)
    assert (row.state, row.ended_at, row.data_count, row.dirty_data_count) == (
        "succeeded",
        9,
        42,
        2,
    )
    assert (row.data_size_bytes, row.read_ms, row.write_ms) == (420, 10, 14)
    runs.create_run(db, task_id, RunTrigger.MANUAL, 10)  # the task may run again


def test_of_two_children_ending_at_once_exactly_one_ends_the_parent(
    runtime: Runtime, creds
) -> None:  # type: ignore[no-untyped-def]
    """Each ends in its own transaction at the same moment: the family's row locks (PostgreSQL)
    or the single writer (SQLite) make one see the other ended, and only that one ends the
    parent. Forty times over, so that the race is run, not just passed."""
    db = runtime.db
    task_id = _task(runtime, creds)
    for attempt in range(40):
        parent, children = _family(runtime, task_id)
        ends, errors = _end_at_once(db, task_id, children, 100 + attempt)
        assert errors == []
        assert [e for e in ends if e is not None] == [
            runs.ParentEnd(parent.run_id, RunState.SUCCEEDED, 98 + attempt)
        ], attempt
        row = _row(runtime, parent.run_id)
        assert (row.state, row.data_count) == ("succeeded", 10)


def _end_at_once(
    db: Database, task_id: str, children: list[runs.Claim], now_ms: int
) -> tuple[list[runs.ParentEnd | None], list[BaseException]]:
    """Each child ends in a thread of its own, all released at once by a barrier: what each
    `finish` said, and what any raised."""
    barrier = threading.Barrier(len(children))
    ends: list[runs.ParentEnd | None] = []
    errors: list[BaseException] = []

    def end(claim: runs.Claim) -> None:
        try:
            moved = runs.Checkpoint(task_id, runs.Progress(5), None, [])
            runs.commit_progress(db, claim, moved, 5)
            barrier.wait()
            ends.append(runs.finish(db, claim, RunState.SUCCEEDED, now_ms))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(c,)) for c in children]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ends, errors


def test_a_failed_slice_stops_its_siblings_and_fails_the_parent(runtime: Runtime, creds) -> None:  # type: ignore[no-untyped-def]
    db = runtime.db
    task_id = _task(runtime, creds)
    parent, (first, second, third) = _family(runtime, task_id, slices=3)
    runs.hand_off(db, third, 5)  # between two steps: it ends at once
    assert runs.finish(db, first, RunState.FAILED, 6, "disk full") is None
    assert _row(runtime, third.run_id).state == "cancelled"
    assert _row(runtime, second.run_id).state == "stopping"  # its worker sees that and stops
    assert _row(runtime, parent.run_id).state == "running"
    end = runs.finish(db, second, RunState.CANCELLED, 8, "stopped")
    assert end is not None
    assert end.state is RunState.FAILED
    row = _row(runtime, parent.run_id)
    assert (row.state, row.remarks) == ("failed", "slice 0: disk full")


def test_a_stop_of_the_parent_reaches_its_children(runtime: Runtime, creds) -> None:  # type: ignore[no-untyped-def]
    db = runtime.db
    task_id = _task(runtime, creds)
    # Children still queued: cancelled before they start, and the parent ends there and then.
    run_id = runs.create_run(db, task_id, RunTrigger.MANUAL, 1)
    parent = runs.claim(db, run_id, OWNER, 2, LEASE)
    assert parent is not None
    queued = runs.create_children(db, parent, [0, 1, 3], 3)
    assert queued is not None
    assert runs.request_stop(db, task_id, 4, 1_000) == [run_id]
    assert _row(runtime, run_id).state == "cancelled"
    assert {_row(runtime, c).state for c in queued} == {"cancelled"}
    assert all(runs.claim(db, c, OWNER, 5, LEASE) is None for c in queued)

    # Children executing: they go `stopping`, and the last to end ends the parent cancelled.
    parent, (first, second) = _family(runtime, task_id)
    assert runs.request_stop(db, task_id, 10, 1_000) == [parent.run_id]
    assert {_row(runtime, c.run_id).state for c in (first, second)} == {"stopping"}
    assert runs.finish(db, first, RunState.CANCELLED, 11, "stopped") is None
    # The other one's worker is gone: at the deadline the supervisor ends it, and the parent.
    assert second.run_id in runs.expire_leases(db, 10 + 1_001, 30_000)
    row = _row(runtime, parent.run_id)
    assert (row.state, row.remarks) == ("cancelled", "stopped")

    # A run asked to stop before it handed its slices over creates none.
    run_id = runs.create_run(db, task_id, RunTrigger.MANUAL, 20)
    claim = runs.claim(db, run_id, OWNER, 21, LEASE)
    assert claim is not None
    runs.request_stop(db, task_id, 22, 1_000)
    assert runs.create_children(db, claim, [0, 1], 23) is None
    with runtime.db.read() as session:
        children = session.scalars(select(RunRow.id).where(RunRow.parent_run_id == run_id))
        assert list(children) == []


def test_a_lost_workers_child_is_taken_over_and_a_queued_child_is_not_expired(
    runtime: Runtime, creds
) -> None:  # type: ignore[no-untyped-def]
    db = runtime.db
    task_id = _task(runtime, creds)
    run_id = runs.create_run(db, task_id, RunTrigger.MANUAL, 1)
    parent = runs.claim(db, run_id, OWNER, 2, LEASE)
    assert parent is not None
    first, second = runs.create_children(db, parent, [0, 1], 3) or []
    lost = runs.claim(db, first, OWNER, 4, LEASE)
    assert lost is not None
    later = 4 + LEASE + 1
    taken = runs.claim(db, first, OWNER, later, LEASE)  # its message, delivered again
    assert taken is not None
    assert taken.epoch == lost.epoch + 1
    with pytest.raises(runs.FencedError):  # the lost worker's late writes are refused
        runs.commit_progress(db, lost, runs.Checkpoint(task_id, runs.Progress(1), None, []), 5)
    # The second still waits in the broker for a free worker, long past the start grace.
    assert runs.expire_leases(db, later + 1, 30_000) == []
    assert runs.expire_leases(db, 10 * 60_000, 30_000) == [first]  # the first's lease lapsed
    assert _row(runtime, second).state == "starting"
    assert _row(runtime, run_id).state == "running"
