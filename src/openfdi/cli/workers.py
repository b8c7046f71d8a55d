"""The worker processes of `openfdi serve` (OPENFDI_WORKER_PROCESSES > 0).

Each is an `openfdi worker`: it claims runs from the metadata database and executes them on its
own interpreter, so copies and thousands of scheduled runs a minute use every core instead of
sharing the API's interpreter lock. They start after the server applied its migrations, are
restarted when one dies, get SIGTERM (their runs end interrupted, resumed later) when the server
stops, and SIGTERM from the kernel should the server die without stopping them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

from openfdi.engine.metrics import MULTIPROCESS_ENV, reset_shared_dir
from openfdi.lifetime import signal_on_parent_death
from openfdi.settings import Settings

log = logging.getLogger(__name__)
_RESTART_DELAY_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM from Linux when the parent exits (even by SIGKILL); exit if it already has."""
    if signal_on_parent_death(parent_pid, signal.SIGTERM):
        sys.exit(0)


class WorkerProcesses:
    def __init__(self, count: int, log_level: str) -> None:
        self.count = count
        self.log_level = log_level
        self._procs: list[subprocess.Popen[bytes]] = []
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)
        self._env = dict(os.environ)

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "openfdi", "worker", "--no-migrate",
            "--log-level", self.log_level, "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        return subprocess.Popen(command, env=self._env)  # noqa: S603 - our own interpreter

    def start(self) -> None:
        # The workers count their runs in files the server's /metrics adds up (multiprocess
        # mode, engine/metrics.py); the variable is theirs only, so the server's own metrics
        # stay in its memory.
        shared = reset_shared_dir(Settings().data_dir)
        self._env = {**os.environ, MULTIPROCESS_ENV: str(shared)}
        self._procs = [self._spawn() for _ in range(self.count)]
        log.info("started %d worker processes: %s", self.count, [p.pid for p in self._procs])
        self._watcher.start()

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _watch(self) -> None:
        while not self._closing.wait(_RESTART_DELAY_S):
            for i, proc in enumerate(self._procs):
                if proc.poll() is not None and not self._closing.is_set():
                    log.warning(
                        "worker %d exited with %s; starting another", proc.pid, proc.returncode
                    )
                    self._procs[i] = self._spawn()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to every worker (they interrupt their runs), SIGKILL to any still there."""
        self._closing.set()
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in %.0f s; killing it", proc.pid, timeout_s)
                proc.kill()
                proc.wait()
