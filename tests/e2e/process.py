"""A real `openfdi serve` process for end-to-end tests: start, stop (SIGTERM) or kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_TIMEOUT_S = 120
OPENFDI = str(Path(sys.executable).parent / "openfdi")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(
        self, workdir: Path, *, demo: bool = True, env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.demo = demo
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "OPENFDI_DATA_DIR": str(workdir / ".openfdi"), **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.stderr = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                OPENFDI,
                "serve",
                *(["--demo"] if self.demo else []),
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Generous: a start imports openfdi twice (server, migrate child) and hashes the
        # bootstrap password, which takes well over 30 s on a machine this busy.
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"openfdi exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"openfdi did not become healthy in {START_TIMEOUT_S} s")

    def stop(self) -> str:
        """SIGTERM, and the server's stderr once it exited. Worker processes get up to 15 s
        each to stop before the server kills them, so 45 s is a hang, not a slow stop: the
        process is killed and its stderr shown."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"openfdi did not stop within 45 s of SIGTERM:\n{err}") from None
        return err

    def kill(self) -> None:
        """kill -9: no shutdown hook runs, leases are left to expire."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.proc = None

    def admin(self, *args: str) -> dict[str, object]:
        out = subprocess.run(
            [OPENFDI, "admin", *args, "--json"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(json.loads(out.stdout))
