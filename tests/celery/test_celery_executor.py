"""The Celery executor end to end: tasks created and run through the SDK, published by the
server, executed by `openfdi worker --executor celery` processes on RabbitMQ, with the
metadata database deciding who runs what."""

from __future__ import annotations

import socket
import subprocess
import time
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openfdi.services.runtime import Runtime
from tests.celery.conftest import OPENFDI, Workers
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
BOTH_BROKERS = pytest.mark.parametrize("broker", ["amqp", "redis"])


@BOTH_BROKERS
def test_runs_spread_over_two_workers_each_once(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    pids = workers.start(2, concurrency=2)
    fill(pg_schema, 20)
    ds = datasource(signed, base_path, pg_schema)
    tasks = [copy_task(sdk, creds, ds, f"dst_{i}", row_sleep_s=0.02) for i in range(24)]
    for task in tasks:
        run(sdk, creds, task)

    rows = wait_for(lambda: ended(runtime, tasks), timeout=60)
    assert Counter(r.task_id for r in rows) == Counter(tasks)  # one run per task
    assert {(r.state, r.epoch, r.data_count) for r in rows} == {("succeeded", 1, 20)}
    ran = Counter(owner_pid(r.lease_owner) for r in rows)
    assert set(ran) == set(pids), ran  # both workers took runs, and nobody else did
    expected = rows_of(pg_schema, "src")
    for i in range(24):
        assert rows_of(pg_schema, f"dst_{i}") == expected


def _publish_again(runtime: Runtime, run_id: str) -> None:
    """A copy of the run's message, as a broker or a publisher retry would deliver it."""
    from openfdi.engine.celery_queue import RUN_TASK, celery_app

    s = runtime.settings
    app = celery_app(s)
    try:
        app.send_task(RUN_TASK, args=(run_id,), task_id=run_id, queue=s.celery_queue)
    finally:
        app.close()


def test_a_duplicated_message_runs_nothing_twice(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    workers.start(2, concurrency=2)
    fill(pg_schema, 20)
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", row_sleep_s=0.05)  # a run of a few seconds
    run(sdk, creds, task)
    (first,) = wait_for(lambda: run_rows(runtime, [task]))
    _publish_again(runtime, first.id)  # while it starts or runs: a live lease, not taken over
    wait_for(lambda: ended(runtime, [task]), timeout=30)
    _publish_again(runtime, first.id)  # after its end: nothing to claim

    handled = wait_for(
        lambda: _outcomes(workers, first.id) if len(_outcomes(workers, first.id)) == 3 else None
    )
    assert sorted(handled) == ["already succeeded", "claimed elsewhere", "ended"], handled
    (after,) = run_rows(runtime, [task])
    assert (after.state, after.epoch, after.data_count) == ("succeeded", 1, 20)  # claimed once
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")


def _outcomes(workers: Workers, run_id: str) -> list[str]:
    """What the workers did with each delivery of the run's message (their logs)."""
    marker = f"run {run_id} (delivery {run_id}): "
    found = []
    for index in range(len(workers.procs)):
        for line in workers.output(index).splitlines():
            if marker in line:
                found.append(line.split(marker, 1)[1].strip())
    return found


@BOTH_BROKERS
def test_a_killed_workers_run_is_taken_over_after_its_lease(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    pids = workers.start(2, concurrency=1)
    fill(pg_schema, 30_000)
    slow_target(pg_schema, "dst", 0.4)  # slices of 5,000 rows: about 3 s in all
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", incremental=True)
    run(sdk, creds, task)
    (running,) = wait_for(
        lambda: [r for r in run_rows(runtime, [task]) if r.state == "running" and r.data_count]
    )
    victim = pids.index(owner_pid(running.lease_owner))
    workers.kill(victim)  # mid-run: its message goes back to the queue, unacknowledged
    assert running.data_count < 30_000

    (done,) = wait_for(lambda: ended(runtime, [task]), timeout=45)
    assert (done.state, done.epoch) == ("succeeded", 2), done.remarks  # one takeover
    assert owner_pid(done.lease_owner) == pids[1 - victim]
    # It went on from the checkpoint (the target's committed position), not from the start,
    # and counted on from the lost owner's totals: one run, each row once.
    assert done.data_count == 30_000
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")  # exact: upserts


@BOTH_BROKERS
def test_batch_stop_ends_running_and_queued_runs_within_the_deadline(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    workers.start(2, concurrency=2)  # 4 runs execute, the other 6 wait in the broker
    fill(pg_schema, 50_000)
    ds = datasource(signed, base_path, pg_schema)
    tasks = []
    for i in range(10):
        slow_target(pg_schema, f"dst_{i}", 0.3)  # 10 slices: 3 s or more
        tasks.append(copy_task(sdk, creds, ds, f"dst_{i}"))
    for task in tasks:
        run(sdk, creds, task)
    wait_for(lambda: sum(r.state == "running" for r in run_rows(runtime, tasks)) == 4)

    asked = time.time()
    body = {"action_id": "stop", "list": [{"task_id": t} for t in tasks]}
    reply = signed.post(f"{base_path}/batch-operation/tasks", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["success_count"] == 10
    rows = wait_for(lambda: ended(runtime, tasks), timeout=10)
    deadline = runtime.settings.stop_deadline_seconds
    assert max(r.ended_at for r in rows) / 1000 - asked < deadline + 1.0  # + a poll and commit
    assert Counter((r.state, r.remarks) for r in rows) == {
        ("cancelled", "stopped"): 4,
        ("cancelled", "stopped before it started"): 6,
    }
    # The queued runs' messages are delivered now and find nothing to run.
    wait_for(lambda: sum(len(_outcomes(workers, r.id)) for r in rows) == 10, timeout=20)
    assert {r.id: r.epoch for r in run_rows(runtime, tasks)} == {r.id: r.epoch for r in rows}


def test_a_worker_serves_the_metrics_of_its_own_runs(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workers.start(1, concurrency=1, extra=("--metrics-port", str(port)))
    fill(pg_schema, 20)
    ds = datasource(signed, base_path, pg_schema)
    tasks = [copy_task(sdk, creds, ds, f"dst_{i}") for i in range(3)]
    for task in tasks:
        run(sdk, creds, task)
    wait_for(lambda: ended(runtime, tasks), timeout=60)

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    rows_moved = ("openfdi_rows_moved_total", (("task_type", "TIMING"),))
    # A run's end is written before its counts: a scrape may come between.
    samples = wait_for(lambda: s if (s := scraped()).get(rows_moved) == 60 else None, timeout=10)
    runs = {k: v for k, v in samples.items() if k[0] == "openfdi_runs_total"}
    assert runs == {("openfdi_runs_total", (("outcome", "succeeded"), ("task_type", "TIMING"))): 3}

    # A port another process holds: the second worker says so and exits 2, serving nothing.
    workers.procs.append(
        subprocess.Popen(
            [
                OPENFDI,
                "worker",
                "--executor",
                "celery",
                "--no-migrate",
                "--metrics-port",
                str(port),
            ],
            env=workers.env(1),
            stderr=subprocess.PIPE,
        )
    )
    second = workers.procs[-1]
    _, err = second.communicate(timeout=90)
    assert second.returncode == 2
    assert f"--metrics-port {port}" in err.decode(), err


@pytest.mark.parametrize("step_seconds", [0.0])  # whole runs; steps: test_steps.py
def test_a_realtime_task_keeps_following_through_a_worker_kill(  # type: ignore[no-untyped-def]
    runtime: Runtime, workers: Workers, sdk, creds, signed, base_path, pg_schema
) -> None:
    pids = workers.start(2, concurrency=2)
    fill(pg_schema, 100)
    slow_target(pg_schema, "dst", 0.0)
    ds = datasource(signed, base_path, pg_schema)
    task = copy_task(sdk, creds, ds, "dst", task_type="REALTIME", incremental=True)
    _batch(signed, base_path, "start", task)
    wait_for(lambda: len(rows_of(pg_schema, "dst")) == 100, timeout=60)
    (first,) = [r for r in run_rows(runtime, [task]) if r.state == "running"]
    victim = pids.index(owner_pid(first.lease_owner))
    workers.kill(victim)

    fill(pg_schema, 250)  # rows 101-250 arrive while the follower is gone
    wait_for(lambda: rows_of(pg_schema, "dst") == rows_of(pg_schema, "src"), timeout=60)
    by_id = {r.id: r for r in run_rows(runtime, [task])}
    assert by_id[first.id].state == "interrupted", by_id[first.id].remarks
    (following,) = [r for r in by_id.values() if r.state == "running"]
    assert owner_pid(following.lease_owner) == pids[1 - victim]  # restarted on the survivor

    _batch(signed, base_path, "stop", task)
    rows = wait_for(lambda: ended(runtime, [task], count=len(by_id)), timeout=30)
    assert {r.id: r.state for r in rows} == {first.id: "interrupted", following.id: "cancelled"}
    assert rows_of(pg_schema, "dst") == rows_of(pg_schema, "src")


def _batch(signed, base_path: str, action: str, task: str) -> None:  # type: ignore[no-untyped-def]
    body = {"action_id": action, "list": [{"task_id": task}]}
    reply = signed.post(f"{base_path}/batch-operation/tasks", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["success_count"] == 1, reply.text
