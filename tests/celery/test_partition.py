"""Worker hosts (network namespaces), one cut off the network in the middle of its runs: another
takes them over after the lease, and when the link comes back the partitioned worker's late
writes are refused by the epoch; every target is exact and every run ran once."""

from __future__ import annotations

from collections import Counter

import pytest

from openfdi.services.runtime import Runtime
from tests.celery.conftest import Workers
from tests.celery.netns import Host
from tests.celery.support import (
    copy_task,
    datasource,
    ended,
    fill,
    owner_pid,
    rows_of,
    run,
    run_rows,
    slow_target,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def step_seconds() -> float:
    """Whole runs: these tests count each run's claims (its epoch) to prove one takeover; a
    run's steps, each a claim, are tested in test_steps.py."""
    return 0.0


def test_a_partitioned_hosts_run_is_taken_over_and_its_late_writes_refused(  # type: ignore[no-untyped-def]
    hosts: list[Host], runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    pids = workers.start(2, concurrency=1, hosts=hosts)
    fill(pg_schema, 30_000)
    slow_target(pg_schema, "dst", 0.4)  # slices of 5,000 rows: about 3 s in all
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", incremental=True)
    run(sdk, creds, task)
    (running,) = wait_for(
        lambda: [r for r in run_rows(runtime, [task]) if r.state == "running" and r.data_count]
    )
    victim = pids.index(owner_pid(running.lease_owner))
    hosts[victim].cut()  # its worker keeps running, unreachable

    (done,) = wait_for(lambda: ended(runtime, [task]), timeout=60)
    assert (done.state, done.epoch) == ("succeeded", 2), done.remarks
    assert owner_pid(done.lease_owner) == pids[1 - victim]
    assert workers.procs[victim].poll() is None  # not dead: partitioned

    hosts[victim].restore()  # its held-up writes arrive now, under the old epoch
    wait_for(lambda: _fenced(workers.output(victim)), timeout=45)
    (after,) = run_rows(runtime, [task])
    assert (after.state, after.epoch, after.data_count, after.ended_at, after.lease_owner) == (
        done.state, done.epoch, done.data_count, done.ended_at, done.lease_owner,
    )  # fmt: skip
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")


def _fenced(log: str) -> bool:
    """The partitioned worker learnt that a newer claim owns its run (lease renewal or a
    checkpoint refused by the epoch)."""
    return "was taken over; stopping it" in log or "lost its claim" in log


@pytest.mark.parametrize("host_count", [3])
def test_thirty_tasks_over_three_hosts_one_cut_mid_run(  # type: ignore[no-untyped-def]
    hosts: list[Host], runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    pids = workers.start(3, concurrency=2, hosts=hosts)
    fill(pg_schema, 10_000)
    ds = datasource(signed, base_path, pg_schema)
    tasks = []
    for i in range(30):
        slow_target(pg_schema, f"dst_{i}", 0.3)  # slices of 5,000 rows: 0.6 s or more a run
        tasks.append(copy_task(sdk, creds, ds, f"dst_{i}", incremental=True))
    for task in tasks:
        run(sdk, creds, task)

    def victims_runs() -> list[str] | None:
        """The runs of the first host seen with two runs under way, once it has them."""
        for host, pid in enumerate(pids):
            mine = [r.id for r in run_rows(runtime, tasks)
                    if r.state == "running" and owner_pid(r.lease_owner) == pid]  # fmt: skip
            if len(mine) == 2:
                nonlocal victim
                victim = host
                return mine
        return None

    victim = -1
    cut_runs = wait_for(victims_runs, timeout=60)
    hosts[victim].cut()  # its worker keeps running, unreachable, with two runs under way

    rows = wait_for(lambda: ended(runtime, tasks), timeout=120)
    assert Counter(r.task_id for r in rows) == Counter(tasks)  # one run per task
    assert {r.state for r in rows} == {"succeeded"}, {(r.state, r.remarks) for r in rows}
    taken_over = {r.id: (r.epoch, owner_pid(r.lease_owner)) for r in rows if r.id in cut_runs}
    for epoch, owner in taken_over.values():
        assert epoch == 2  # claimed once more, by a host that can reach the database
        assert owner in set(pids) - {pids[victim]}
    assert {r.epoch for r in rows if r.id not in cut_runs} == {1}
    ran = Counter(owner_pid(r.lease_owner) for r in rows)
    assert set(ran) <= set(pids), ran

    hosts[victim].restore()  # the held-up writes arrive now, under the old epoch
    wait_for(lambda: _fenced(workers.output(victim)), timeout=45)
    after = {r.id: (r.state, r.epoch, r.data_count, r.ended_at) for r in run_rows(runtime, tasks)}
    assert after == {r.id: (r.state, r.epoch, r.data_count, r.ended_at) for r in rows}
    expected = rows_of(pg_schema, "src")
    for i in range(30):
        assert rows_of(pg_schema, f"dst_{i}") == expected, f"dst_{i}"
