"""kill -9 of the server in the middle of a run, then a restart: the run is closed as
interrupted, a REALTIME task resumes by itself, and nothing is lost or duplicated."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from openfdi.client import signed_client
from tests.e2e.process import Served

PROJECT = "b4a5d4098fb4474fa22cd05f897d6b99"
INSTANCE = "4f2b6c1e-8a4d-4f6e-9b1a-2c3d4e5f6a7b"
AK, SK = "CRASHAK0000000000001", "crashSecretKey00000000000000000000000001"
ENV = {
    "OPENFDI_BOOTSTRAP_PROJECT_ID": PROJECT,
    "OPENFDI_BOOTSTRAP_INSTANCE_ID": INSTANCE,
    "OPENFDI_BOOTSTRAP_AK": AK,
    "OPENFDI_BOOTSTRAP_SK": SK,
    "OPENFDI_LEASE_SECONDS": "2",  # a dead server's runs are given up after 2 s
    "OPENFDI_POLL_INTERVAL_SECONDS": "0.2",
    "OPENFDI_SQLITE_ROOTS": tempfile.gettempdir(),  # the tests' SQLite files are in tmp_path
}
BASE = f"/v2/{PROJECT}/fdi/instances/{INSTANCE}"


def _fill(path: Path, ids: range) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body TEXT, amount REAL)"
        )
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?)", ((i, f"event {i}" * 3, i / 7) for i in ids)
        )


def _ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'copy'").fetchone():
            return []
        return [r[0] for r in conn.execute("SELECT id FROM copy ORDER BY id")]


def _client(served: Served) -> httpx.Client:
    return signed_client(served.url, AK, SK, PROJECT)


def _task(
    client: httpx.Client, src: Path, dst: Path, task_type: str, detail: dict[str, Any]
) -> str:
    ids = []
    for i, path in enumerate((src, dst)):
        reply = client.post(
            f"{BASE}/datasources",
            json={"datasource_name": f"ds-{i}", "datasource_type": "SQLITE",
                  "content": {"database_name": str(path)}},
        )  # fmt: skip
        assert reply.status_code == 201, reply.text
        ids.append(reply.json()["datasource_id"])
    body = {
        "task": {"task_name": f"crash-{task_type.lower()}", "task_type": task_type,
                 "source_datasource_id": ids[0], "target_datasource_id": ids[1]},
        "task_detail": json.dumps(detail),
    }  # fmt: skip
    reply = client.post(f"{BASE}/tasks", json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["task"]["task_id"])


def _logs(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    reply = client.get(f"{BASE}/tasks/{task_id}/monitor-logs")
    assert reply.status_code == 200, reply.text
    return list(reply.json()["entities"])


def _wait(predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"not reached in {timeout} s")


def test_kill_during_a_copy_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    _fill(src, range(1, 400_001))
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    try:
        with _client(served) as client:
            detail = {
                "sourceSelectedDatasource": {"table": "events"},
                "targetSelectedDatasource": {"table": "copy", "writeMode": "upsert",
                                             "keyColumns": ["id"]},
            }  # fmt: skip
            task = _task(client, src, dst, "TIMING", detail)
            assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            _wait(lambda: _logs(client, task)[0]["data_count"] > 0)
        served.kill()
        copied_before = len(_ids(dst))
        assert 0 < copied_before < 400_000

        served.start()
        with _client(served) as client:
            first = _wait(
                lambda: (
                    _logs(client, task)[0]["execute_status"] != "RUNNING" and _logs(client, task)[0]
                )
            )
            assert first["execute_status"] == "ERROR"
            assert "interrupted" in first["remarks"]
            assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            _wait(
                lambda: (
                    len(_logs(client, task)) == 2
                    and _logs(client, task)[0]["execute_status"] == "SUCCESS"
                ),
                120,
            )
        assert _ids(dst) == list(range(1, 400_001))
    finally:
        if served.proc is not None:
            served.stop()


def test_a_started_realtime_task_resumes_after_a_crash(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    _fill(src, range(1, 200_001))
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    try:
        with _client(served) as client:
            detail = {
                "sourceSelectedDatasource": {"table": "events", "incremental": {"column": "id"}},
                "targetSelectedDatasource": {"table": "copy"},
            }
            task = _task(client, src, dst, "REALTIME", detail)
            reply = client.post(
                f"{BASE}/batch-operation/tasks",
                json={"action_id": "start", "list": [{"task_id": task}]},
            )
            assert reply.json()["success_count"] == 1
            _wait(lambda: _logs(client, task) and _logs(client, task)[0]["data_count"] > 0)
        served.kill()
        _fill(src, range(200_001, 200_101))  # rows that arrive while the server is down

        served.start()  # nobody asks: the supervisor resumes the started task from its checkpoint
        _wait(lambda: len(_ids(dst)) == 200_100, 120)
        assert _ids(dst) == list(range(1, 200_101))  # the target's key refuses any re-sent row
        with _client(served) as client:
            logs = _logs(client, task)
        # Newest first: the resumed run follows on; the killed one was closed as interrupted.
        # Nothing between them: a kill after the target's commit and before the checkpoint's
        # leaves the batch's read range in the target (openfdi_positions, same transaction), and
        # the resumed run starts past it instead of sending the batch again.
        assert [log["execute_status"] for log in logs] == ["RUNNING", "ERROR"], logs
        assert "interrupted" in logs[-1]["remarks"], logs
    finally:
        if served.proc is not None:
            served.stop()


def test_a_graceful_restart_resumes_started_realtime_tasks(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    _fill(src, range(1, 1001))
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    try:
        with _client(served) as client:
            detail = {
                "sourceSelectedDatasource": {"table": "events", "incremental": {"column": "id"}},
                "targetSelectedDatasource": {"table": "copy"},
            }
            task = _task(client, src, dst, "REALTIME", detail)
            client.post(
                f"{BASE}/batch-operation/tasks",
                json={"action_id": "start", "list": [{"task_id": task}]},
            )
            _wait(lambda: len(_ids(dst)) == 1000)
        served.stop()  # SIGTERM: runs end INTERRUPTED, not CANCELLED as a user's stop would
        _fill(src, range(1001, 1011))
        served.start()
        _wait(lambda: len(_ids(dst)) == 1010)
        with _client(served) as client:
            states = [log["execute_status"] for log in _logs(client, task)]
            assert states == ["RUNNING", "ERROR"]
            assert "server shut down" in _logs(client, task)[1]["remarks"]
    finally:
        if served.proc is not None:
            served.stop()
