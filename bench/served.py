"""What the benchmarks share: a real `openfdi serve` on a free loopback port with its own data
dir, its signed API (data sources, tasks, runs, monitor logs) and its memory (peak RSS).

Imported as `bench.served`: run a bench from the repository's root as a module
(`.venv/bin/python -m bench.messages`), or as a script, which puts the root on sys.path first
(see the top of bench/copy.py for why a script must also take its own directory off it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from openfdi.client import signed_client

PROJECT_ID = "b3c4d5e6f708192a3b4c5d6e7f809102"
INSTANCE_ID = "6a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
AK = "BENCHAK0000000000001"
SK = "benchSecretKey00000000000000000000000001"
BASE = f"/v2/{PROJECT_ID}/fdi/instances/{INSTANCE_ID}"
START_TIMEOUT_S = 120


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openfdi_command() -> list[str]:
    script = Path(sys.executable).with_name("openfdi")
    if script.exists():
        return [str(script)]
    found = shutil.which("openfdi")
    return [found] if found else [sys.executable, "-m", "openfdi"]


@contextlib.contextmanager
def openfdi_server(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """`openfdi serve` on a free loopback port (SQLite metadata in `data_dir`, engine on);
    yields (URL, pid) and stops it (SIGINT, then SIGKILL after 20 s)."""
    port = free_port()
    full_env = {
        **os.environ,
        "OPENFDI_DATA_DIR": str(data_dir),
        "OPENFDI_BOOTSTRAP_PROJECT_ID": PROJECT_ID,
        "OPENFDI_BOOTSTRAP_INSTANCE_ID": INSTANCE_ID,
        "OPENFDI_BOOTSTRAP_AK": AK,
        "OPENFDI_BOOTSTRAP_SK": SK,
        "OPENFDI_BOOTSTRAP_USER": "bench",
        "OPENFDI_BOOTSTRAP_PASSWORD": "bench-password",
        **(env or {}),
    }
    full_env.pop("OPENFDI_DATABASE_URL", None)
    command = [
        *_openfdi_command(),
        *("serve", "--host", "127.0.0.1", "--port", str(port)),
        *("--no-access-log", "--log-level", "warning"),
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    with log_path.open("wb") as server_log:
        process = subprocess.Popen(
            command, env=full_env, stdout=server_log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"openfdi serve exited: {log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"openfdi serve did not answer /healthz within {START_TIMEOUT_S} s"
                    )
                time.sleep(0.1)
            yield url, process.pid
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def status_kb(pid: int, key: str) -> int:
    """A line of /proc/<pid>/status in kB (VmRSS, VmHWM), 0 when missing."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class RssWatch:
    """Peak RSS of a process over a span: VmHWM reset at the start, plus VmRSS sampled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_kb = status_kb(pid, "VmRSS")
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.sampled_kb = self.before_kb
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            with contextlib.suppress(OSError):
                self.sampled_kb = max(self.sampled_kb, status_kb(self.pid, "VmRSS"))

    def stop(self) -> tuple[float, float]:
        """(peak MB, peak minus the RSS before, MB)."""
        self._done.set()
        self._thread.join(5)
        peak = self.sampled_kb
        if self.hwm_reset:
            with contextlib.suppress(OSError):
                peak = max(peak, status_kb(self.pid, "VmHWM"))
        return peak / 1024, (peak - self.before_kb) / 1024


@dataclass
class RunOutcome:
    status: str
    rows: int
    ms: int
    remarks: str | None
    dirty: int
    read_ms: int
    write_ms: int
    start_time: int
    end_time: int


class Api:
    """The signed FDI API of a served openfdi, as the benchmarks use it."""

    def __init__(self, url: str) -> None:
        self.client = signed_client(url, AK, SK, PROJECT_ID, timeout=60)

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.client.post(f"{BASE}{path}", json=body)
        if not reply.is_success:
            raise RuntimeError(f"POST {path}: {reply.status_code} {reply.text[:500]}")
        return dict(reply.json())

    def datasource(self, name: str, kind: str, content: dict[str, Any]) -> str:
        body = {"datasource_name": name, "datasource_type": kind, "content": content}
        return str(self._post("/datasources", body)["datasource_id"])

    def task(
        self, name: str, source: str, target: str, detail: str, task_type: str = "TIMING"
    ) -> str:
        body = {
            "task": {
                "task_name": name,
                "task_type": task_type,
                "source_datasource_id": source,
                "target_datasource_id": target,
            },
            "task_detail": detail,
        }
        return str(self._post("/tasks", body)["task"]["task_id"])

    def run(self, task_id: str) -> str:
        return str(self._post(f"/tasks/{task_id}/run")["run_id"])

    def terminate(self, task_id: str) -> None:
        self._post(f"/tasks/{task_id}/terminate")

    def batch(self, task_id: str, action: str) -> None:
        """`start` or `stop` a task (batch-operation)."""
        reply = self._post("/batch-operation/tasks", {"action_id": action,
                                                      "list": [{"task_id": task_id}]})  # fmt: skip
        if reply.get("success_count") != 1:
            raise RuntimeError(f"{action} {task_id}: {reply}")

    def run_log(self, task_id: str, run_id: str) -> dict[str, Any] | None:
        reply = self.client.get(
            f"{BASE}/tasks/{task_id}/monitor-logs", params={"offset": 1, "limit": 5}
        )
        reply.raise_for_status()
        for entity in reply.json()["entities"]:
            if entity["id"] == run_id:
                return dict(entity)
        return None

    def wait(self, task_id: str, run_id: str, timeout_s: float, poll_s: float) -> RunOutcome:
        deadline = time.monotonic() + timeout_s
        while True:
            entry = self.run_log(task_id, run_id)
            if entry is not None and entry["execute_status"] != "RUNNING" and entry["end_time"]:
                return RunOutcome(
                    status=entry["execute_status"],
                    rows=entry["data_count"],
                    ms=entry["end_time"] - entry["start_time"],
                    remarks=entry["remarks"],
                    dirty=entry["dirty_data_count"],
                    read_ms=entry["read_spend_time"],
                    write_ms=entry["write_spend_time"],
                    start_time=entry["start_time"],
                    end_time=entry["end_time"],
                )
            if time.monotonic() > deadline:
                self.terminate(task_id)
                raise RuntimeError(f"run {run_id} did not end within {timeout_s:.0f} s")
            time.sleep(poll_s)
