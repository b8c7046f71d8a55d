"""`openfdi serve` listens where OPENFDI_HOST / OPENFDI_PORT say unless --host/--port say
otherwise (issue 10 item 15: they were ignored, the server always took 127.0.0.1:8080)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import OPENFDI, _free_port

# A first start applies the migrations in a child process and creates the project: far slower
# than later starts, more so with the two servers of this test starting at once.
_START_S = 150


def _serve(workdir: Path, env: dict[str, str], *flags: str) -> subprocess.Popen[str]:
    workdir.mkdir()
    return subprocess.Popen(
        [OPENFDI, "serve", "--no-access-log", *flags],
        cwd=workdir,
        env={**os.environ, "OPENFDI_DATA_DIR": str(workdir / ".openfdi"), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + _START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"openfdi exited: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"nothing healthy at {url} in {_START_S} s")


@pytest.mark.slow
def test_serve_takes_host_and_port_from_the_environment_and_flags_win(tmp_path: Path) -> None:
    env_port, flag_port, ignored_port = _free_port(), _free_port(), _free_port()
    procs = [
        from_env := _serve(
            tmp_path / "a", {"OPENFDI_HOST": "127.0.0.1", "OPENFDI_PORT": str(env_port)}
        ),
        from_flag := _serve(
            tmp_path / "b", {"OPENFDI_PORT": str(ignored_port)}, "--port", str(flag_port)
        ),
    ]
    try:
        _wait_healthy(f"http://127.0.0.1:{env_port}", from_env)
        _wait_healthy(f"http://127.0.0.1:{flag_port}", from_flag)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{ignored_port}/healthz", timeout=1)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.communicate(timeout=45)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
