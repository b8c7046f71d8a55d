"""`openfdi serve` with worker processes (OPENFDI_WORKER_PROCESSES): runs execute in
`openfdi worker` children that claim them from the database; stop reaches them through the
database; they die with the server, and a restart loses and duplicates nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.process import Served
from tests.e2e.test_crash import BASE, ENV, _client, _fill, _ids, _logs, _task, _wait

WORKER_ENV = {**ENV, "OPENFDI_WORKER_PROCESSES": "2"}
UPSERT = {
    "sourceSelectedDatasource": {"table": "events"},
    "targetSelectedDatasource": {"table": "copy", "writeMode": "upsert", "keyColumns": ["id"]},
}


@contextmanager
def _served(tmp_path: Path) -> Iterator[Served]:
    """`openfdi serve` with 2 worker processes, stopped (SIGTERM) at the end unless killed."""
    served = Served(tmp_path, demo=False, env=WORKER_ENV)
    served.start()
    try:
        yield served
    finally:
        if served.proc is not None:
            served.stop()


def _children(pid: int) -> list[int]:
    """The live child processes of `pid`, whichever of its threads started them: a worker
    replaced by the server's watcher thread is a child of that thread, listed under its task
    only (and the main thread's list keeps a killed worker until it is reaped, as a zombie)."""
    found: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{tid}/children") as f:
            found += [int(p) for p in f.read().split()]
    return sorted(p for p in found if _alive(p))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _finished(client, task: str):  # type: ignore[no-untyped-def]
    logs = _logs(client, task)
    return logs[0] if logs and logs[0]["execute_status"] != "RUNNING" else None


def test_runs_execute_in_worker_processes_and_stop_through_the_database(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    _fill(src, range(1, 300_001))
    with _served(tmp_path) as served:
        assert served.proc is not None
        workers = _wait(lambda: len(_children(served.proc.pid)) == 2 and _children(served.proc.pid))
        with _client(served) as client:
            # The server itself executes nothing: it has no executor to report on.
            assert "openfdi_runs_executing" not in client.get("/metrics").text
            task = _task(client, src, dst, "TIMING", UPSERT)
            assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            _wait(lambda: _logs(client, task)[0]["data_count"] > 0)
            assert client.post(f"{BASE}/tasks/{task}/terminate").status_code == 200
            stopped = _wait(lambda: _finished(client, task), timeout=10)
            assert stopped["execute_status"] == "CANCELLED", stopped
            assert 0 < stopped["data_count"] < 300_000

            assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            done = _wait(lambda: _finished(client, task), timeout=120)
            assert (done["execute_status"], done["data_count"]) == ("SUCCESS", 300_000), done
        assert _ids(dst) == list(range(1, 300_001))
        assert _children(served.proc.pid) == workers  # none died or was replaced


def test_a_realtime_task_follows_and_stops_on_batch_stop(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    _fill(src, range(1, 11))
    with _served(tmp_path) as served:
        with _client(served) as client:
            detail = {**UPSERT, "sourceSelectedDatasource": {
                "table": "events", "incremental": {"column": "id"}}}  # fmt: skip
            task = _task(client, src, dst, "REALTIME", detail)
            body = {"action_id": "start", "list": [{"task_id": task}]}
            assert client.post(f"{BASE}/batch-operation/tasks", json=body).status_code == 200
            _wait(lambda: len(_ids(dst)) == 10)
            _fill(src, range(11, 21))
            _wait(lambda: len(_ids(dst)) == 20)
            body["action_id"] = "stop"
            assert client.post(f"{BASE}/batch-operation/tasks", json=body).status_code == 200
            stopped = _wait(lambda: _finished(client, task), timeout=10)
            assert stopped["execute_status"] == "CANCELLED", stopped
            _fill(src, range(21, 31))
            time.sleep(1.0)  # a run still following would copy these within its 0.2 s poll
        assert _ids(dst) == list(range(1, 21))


def test_workers_die_with_a_killed_server_and_a_restart_loses_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    _fill(src, range(1, 300_001))
    with _served(tmp_path) as served:
        assert served.proc is not None
        workers = _wait(lambda: len(_children(served.proc.pid)) == 2 and _children(served.proc.pid))
        with _client(served) as client:
            task = _task(client, src, dst, "TIMING", UPSERT)
            assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            _wait(lambda: _logs(client, task)[0]["data_count"] > 0)
        served.kill()
        _wait(lambda: not any(_alive(pid) for pid in workers), timeout=15)
        assert 0 < len(_ids(dst)) < 300_000

        served.start()
        with _client(served) as client:
            first = _wait(lambda: _finished(client, task))
            assert first["execute_status"] == "ERROR", first
            assert "interrupted" in first["remarks"]
            assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            done = _wait(lambda: len(_logs(client, task)) == 2 and _finished(client, task), 120)
            assert done["execute_status"] == "SUCCESS", done
        assert _ids(dst) == list(range(1, 300_001))


def test_a_worker_stops_on_a_burst_of_signals(tmp_path: Path) -> None:
    """The server's SIGTERM and the kernel's (when the server exits) can come together; a worker
    must stop however many arrive, wherever they interrupt it."""
    env = {**os.environ, **ENV, "OPENFDI_DATA_DIR": str(tmp_path / ".openfdi")}
    openfdi = str(Path(sys.executable).parent / "openfdi")
    for attempt in range(5):
        worker = subprocess.Popen(
            [openfdi, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _await_line(worker, "claiming runs", timeout=60)  # migrated (the first time), polling
            time.sleep(attempt * 0.05)  # the burst lands at a different point of the poll loop
            for _ in range(200):
                with contextlib.suppress(ProcessLookupError):
                    worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def _await_line(proc: subprocess.Popen[bytes], text: str, timeout: float) -> None:
    """Read the process's stderr until a line holds `text` (a sleep instead would race a slow
    start on a busy host: a SIGTERM before the handler is installed kills by default action)."""
    assert proc.stderr is not None
    found = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if text.encode() in line:
                found.set()
        # keep draining to EOF so the worker never blocks on a full pipe

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"the worker never logged {text!r}"


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    if not os.path.exists("/proc/self/task"):
        pytest.fail("these tests read /proc (Linux)")
