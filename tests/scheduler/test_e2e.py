"""The scheduler end to end, in real seconds: a live server with the engine on, real runs.

These tests wait for wall-clock fires, so they are kept few and short (a 2 s plan).
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openfdi.client import signed_client
from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.store.tables import RunRow
from tests.conftest import Credentials, LiveServer, make_settings
from tests.engine.conftest import wait_for
from tests.factories import unique

EVERY_2S = "*/2 * * * * ?"
EVERY_1S = "* * * * * ?"


@pytest.fixture
def engine_enabled() -> bool:
    return True


def _source(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"n{i}") for i in range(rows)])


def _armed_task(
    client: httpx.Client, base: str, tmp: Path, cron: str, *, rows: int = 1, where: str = ""
) -> str:
    """A started TIMING task copying `rows` rows (upsert) on the plan `cron`."""
    src, dst = tmp / f"{unique('src')}.db", tmp / f"{unique('dst')}.db"
    _source(src, rows)
    sqlite3.connect(dst).close()
    ids = []
    for path in (src, dst):
        body = {
            "datasource_name": unique("ds"),
            "datasource_type": "SQLITE",
            "content": {"database_name": str(path)},
        }
        reply = client.post(f"{base}/datasources", json=body)
        assert reply.status_code == 201, reply.text
        ids.append(reply.json()["datasource_id"])
    source: dict[str, Any] = {"table": "orders", **({"where": where} if where else {})}
    detail = {
        "sourceSelectedDatasource": source,
        "targetSelectedDatasource": {"table": "copy", "writeMode": "upsert", "keyColumns": ["id"]},
    }
    body = {
        "task": {
            "task_name": unique("timing"),
            "task_type": "TIMING",
            "source_datasource_id": ids[0],
            "target_datasource_id": ids[1],
        },
        "task_detail": __import__("json").dumps(detail),
    }
    reply = client.post(f"{base}/tasks", json=body)
    assert reply.status_code == 200, reply.text
    task_id = str(reply.json()["task"]["task_id"])
    plan = {"start_datetime": 1767225600000, "use_quartz_cron": True, "cron": cron}
    reply = client.post(f"{base}/tasks/{task_id}/dispatches", json=plan)
    assert reply.status_code == 200, reply.text
    _batch(client, base, "start", task_id)
    return task_id


def _batch(client: httpx.Client, base: str, action: str, task_id: str) -> None:
    body = {"action_id": action, "list": [{"task_id": task_id}]}
    reply = client.post(f"{base}/batch-operation/tasks", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["success_count"] == 1, reply.text


def _fires(rt: Runtime, task_id: str) -> list[RunRow]:
    with rt.db.read() as session:
        return list(
            session.scalars(
                select(RunRow)
                .where(RunRow.task_id == task_id, RunRow.fire_time.is_not(None))
                .order_by(RunRow.fire_time)
            )
        )


def _done(rt: Runtime, task_id: str, n: int) -> list[RunRow] | None:
    runs = [r for r in _fires(rt, task_id) if r.state == "succeeded"]
    return runs if len(runs) >= n else None


@pytest.fixture
def client(server: LiveServer, creds: Credentials) -> Iterator[httpx.Client]:
    with signed_client(server.url, creds.ak, creds.sk, creds.project_id) as c:
        yield c


def test_a_two_second_plan_fires_on_time_and_stops_with_the_task(
    runtime: Runtime, client: httpx.Client, base_path: str, tmp_path: Path
) -> None:
    task = _armed_task(client, base_path, tmp_path, EVERY_2S)
    runs = wait_for(lambda: _done(runtime, task, 3), timeout=15)
    fires = [r.fire_time or 0 for r in runs]
    assert all(f % 2000 == 0 for f in fires)
    # On the plan's 2 s grid, each fire once, in order (a fire skipped under load is allowed).
    assert all(b > a and (b - a) % 2000 == 0 for a, b in itertools.pairwise(fires)), fires
    # Never early. How late is measured by bench/scheduler.py, not asserted on a busy machine.
    assert all((r.started_at or 0) >= (r.fire_time or 0) for r in runs)
    assert {r.trigger for r in runs} == {"schedule"}

    _batch(client, base_path, "stop", task)
    stopped_at = int(time.time() * 1000)
    time.sleep(3.0)  # at least one more fire would have come
    after = [r for r in _fires(runtime, task) if (r.fire_time or 0) > stopped_at]
    assert after == []
    shown = client.get(f"{base_path}/tasks/{task}/dispatches").json()
    assert len(shown["next_fire_times"]) == 5  # the plan stays; it is just not armed


def _metric(client: httpx.Client, name: str) -> float:
    """A sample's value from /metrics (0 when absent)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[-1])
    return 0.0


def test_fires_and_runs_show_in_the_metrics(
    runtime: Runtime, client: httpx.Client, base_path: str, tmp_path: Path
) -> None:
    task = _armed_task(client, base_path, tmp_path, EVERY_2S)
    runs = wait_for(lambda: _done(runtime, task, 2), timeout=15)
    assert _metric(client, "openfdi_scheduler_armed_tasks") == 1
    assert _metric(client, 'openfdi_scheduler_fires_total{outcome="run"}') >= len(runs)
    assert _metric(client, "openfdi_scheduler_ticks_total") > 0
    assert _metric(client, "openfdi_runs_queued") == 0
    _batch(client, base_path, "stop", task)
    wait_for(lambda: _metric(client, "openfdi_scheduler_armed_tasks") == 0, timeout=5)


def test_runs_longer_than_the_period_never_overlap(
    runtime: Runtime, client: httpx.Client, base_path: str, tmp_path: Path
) -> None:
    # Each run reads 5,000 rows, generating 300 kB of random bytes per row: about 2 s a run on
    # an idle machine of the reference kind (100 kB was 0.7 s there: too close to the period).
    slow = "length(randomblob(300000)) > 0"
    task = _armed_task(client, base_path, tmp_path, EVERY_1S, rows=5000, where=slow)
    # Until a second run has begun: the first ran to its end, fires meanwhile were skipped.
    wait_for(lambda: len([r for r in _fires(runtime, task) if r.state != "skipped"]) >= 2, 30)
    _batch(client, base_path, "stop", task)
    wait_for(lambda: all(r.state not in ("starting", "running") for r in _fires(runtime, task)))
    fires = _fires(runtime, task)
    ran = [r for r in fires if r.state != "skipped"]
    skipped = [r for r in fires if r.state == "skipped"]
    assert len(skipped) >= 1
    spans = sorted(((r.started_at or 0), (r.ended_at or 0)) for r in ran)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans  # one run at a time
    for skip in skipped:
        assert skip.remarks is not None
        assert "is still in progress" in skip.remarks
        # It fell due while a run was going on.
        assert any(s <= (skip.fire_time or 0) <= e for s, e in spans), (skip.fire_time, spans)
    assert [r.fire_time for r in fires] == sorted({r.fire_time for r in fires})  # once each


def test_an_armed_plan_keeps_firing_after_a_restart(
    runtime: Runtime, tmp_path: Path, creds: Credentials, base_path: str
) -> None:
    with (
        LiveServer(runtime) as first,
        signed_client(first.url, creds.ak, creds.sk, creds.project_id) as client,
    ):
        task = _armed_task(client, base_path, tmp_path, EVERY_2S)
        wait_for(lambda: _done(runtime, task, 1), timeout=10)
    runtime.close()
    restarted_at = int(time.time() * 1000)

    again = Runtime.open(make_settings(tmp_path / "data", runtime.settings.database_url,
                                       engine=True))  # fmt: skip
    identity.bootstrap(again)
    try:
        with LiveServer(again):
            runs = wait_for(
                lambda: (
                    [r for r in (_done(again, task, 1) or []) if r.created_at > restarted_at]
                    or None
                ),
                timeout=10,
            )
            assert (runs[0].started_at or 0) >= (runs[0].fire_time or 0)
    finally:
        again.close()
    fires = [r.fire_time for r in _fires(again, task)]
    assert len(fires) == len(set(fires))
