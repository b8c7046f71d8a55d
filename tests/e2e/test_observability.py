"""`openfdi serve` with worker processes, logging JSON: /metrics counts the runs the workers
executed (and keeps them when the workers are replaced), a failed run logs its reason at
WARNING with its task and run ids, and every response carries a request id (issue 10 items 14
and 16)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
from pathlib import Path

import httpx

from tests.e2e.process import Served
from tests.e2e.test_crash import BASE, ENV, _client, _fill, _ids, _logs, _wait
from tests.e2e.test_workers import _alive, _children
from tests.factories import unique

COPY = {"sourceSelectedDatasource": {"table": "events"},
        "targetSelectedDatasource": {"table": "copy"}}  # fmt: skip


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus exposition, or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if found == labels:
            return float(match[3])
    return None


def _task(client: httpx.Client, src: Path, dst: Path) -> str:
    ids = []
    for path in (src, dst):
        body = {"datasource_name": unique("ds"), "datasource_type": "SQLITE",
                "content": {"database_name": str(path)}}  # fmt: skip
        reply = client.post(f"{BASE}/datasources", json=body)
        assert reply.status_code == 201, reply.text
        ids.append(reply.json()["datasource_id"])
    body = {
        "task": {"task_name": unique("task"), "task_type": "TIMING",
                 "source_datasource_id": ids[0], "target_datasource_id": ids[1]},
        "task_detail": json.dumps(COPY),
    }  # fmt: skip
    reply = client.post(f"{BASE}/tasks", json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["task"]["task_id"])


def _finished(client: httpx.Client, task: str) -> dict[str, object] | None:
    logs = _logs(client, task)
    return logs[0] if logs and logs[0]["execute_status"] != "RUNNING" else None


def test_metrics_count_worker_runs_and_a_failed_run_logs_a_json_warning(tmp_path: Path) -> None:
    src, dst, gone = tmp_path / "src.db", tmp_path / "dst.db", tmp_path / "gone.db"
    _fill(src, range(1, 1001))
    _fill(gone, range(1, 11))
    env = {**ENV, "OPENFDI_WORKER_PROCESSES": "2", "OPENFDI_LOG_FORMAT": "json"}
    served = Served(tmp_path, demo=False, env=env)
    served.start()
    stderr = ""
    try:
        with _client(served) as client:
            good = _task(client, src, dst)
            bad = _task(client, gone, tmp_path / "dst2.db")
            with sqlite3.connect(gone) as conn:  # the run fails: its source table is gone
                conn.execute("DROP TABLE events")
            for task in (good, bad):
                assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            assert _wait(lambda: _finished(client, good))["execute_status"] == "SUCCESS"
            failed = _wait(lambda: _finished(client, bad))
            assert failed["execute_status"] == "ERROR"
            assert _ids(dst) == list(range(1, 1001))

            workers = _children(served.proc.pid)  # type: ignore[union-attr]
            assert len(workers) == 2
            for pid in workers:  # the workers that counted the runs go away; counts stay
                os.kill(pid, signal.SIGKILL)
            _wait(lambda: not any(map(_alive, workers)))
            server = served.proc.pid  # type: ignore[union-attr]
            replaced = _wait(lambda: len(found := _children(server)) == 2 and found)
            assert not set(replaced) & set(workers)  # two new workers

            reply = httpx.get(f"{served.url}/metrics", headers={"X-Request-Id": "probe-1"})
            assert reply.status_code == 200
            assert reply.headers["X-Request-Id"] == "probe-1"
            text = reply.text
        timing = {"task_type": "TIMING"}
        assert _sample(text, "openfdi_runs_total", outcome="succeeded", **timing) == 1
        assert _sample(text, "openfdi_runs_total", outcome="failed", **timing) == 1
        assert _sample(text, "openfdi_rows_moved_total", **timing) == 1000
        assert (_sample(text, "openfdi_bytes_moved_total", **timing) or 0) > 10_000
        assert _sample(text, "openfdi_rows_refused_total", **timing) is None  # none refused
        count = _sample(text, "openfdi_run_duration_seconds_count", outcome="succeeded", **timing)
        assert count == 1
        assert (_sample(text, "process_resident_memory_bytes") or 0) > 0
    finally:
        if served.proc is not None:
            stderr = served.stop()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines, stderr[-2000:]
    warnings = [
        line for line in lines
        if line.get("level") == "WARNING" and line.get("task_id") == bad
        and line.get("run_id") == failed["id"]
    ]  # fmt: skip
    assert warnings, [line for line in lines if line.get("level") != "INFO"]
    assert "events" in warnings[0]["message"]  # the reason: the table that is missing
    assert {"time", "logger", "message"} <= set(warnings[0])
