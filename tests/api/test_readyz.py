"""GET /readyz: 200 when the database answers, its migrations are at head and the engine runs;
503 naming what is not ready otherwise. /healthz (liveness) stays 200 meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openfdi.services.runtime import Runtime
from openfdi.store.db import head_revision
from tests.conftest import LiveServer, make_settings


@pytest.fixture
def open_runtimes() -> Iterator[list[Runtime]]:
    opened: list[Runtime] = []
    yield opened
    for rt in opened:
        rt.close()


def _readyz(runtime: Runtime) -> tuple[int, dict[str, object], int]:
    with LiveServer(runtime) as live:
        ready = httpx.get(f"{live.url}/readyz", timeout=30)
        health = httpx.get(f"{live.url}/healthz", timeout=30) if ready.status_code == 503 else ready
        return ready.status_code, ready.json(), health.status_code


def test_ready_with_the_engine_running(tmp_path: Path, open_runtimes: list[Runtime]) -> None:
    runtime = Runtime.open(make_settings(tmp_path / "data", engine=True))
    open_runtimes.append(runtime)
    status, body, _ = _readyz(runtime)
    assert status == 200, body
    assert body == {"status": "ready",
                    "checks": {"database": "ok", "migrations": "ok", "engine": "ok"}}  # fmt: skip


def test_ready_without_an_engine_says_it_is_disabled(
    tmp_path: Path, open_runtimes: list[Runtime]
) -> None:
    runtime = Runtime.open(make_settings(tmp_path / "data", engine=False))
    open_runtimes.append(runtime)
    status, body, _ = _readyz(runtime)
    assert status == 200, body
    assert body["checks"] == {"database": "ok", "migrations": "ok", "engine": "disabled"}


def test_not_ready_before_the_migrations(tmp_path: Path, open_runtimes: list[Runtime]) -> None:
    runtime = Runtime.open(make_settings(tmp_path / "data"), migrate=False)
    open_runtimes.append(runtime)
    status, body, health = _readyz(runtime)
    assert status == 503, body
    assert body["status"] == "not ready"
    assert (
        body["reason"] == f"migrations: database at no migration, openfdi needs {head_revision()}"
    )
    assert health == 200  # alive: a restart would not help, the migrations would


def test_not_ready_when_the_database_is_unreachable(
    tmp_path: Path, open_runtimes: list[Runtime]
) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:1/postgres?connect_timeout=2"
    runtime = Runtime.open(make_settings(tmp_path / "data", nowhere), migrate=False)
    open_runtimes.append(runtime)
    with LiveServer(runtime) as live:
        reply = httpx.get(f"{live.url}/readyz", timeout=30)
    assert reply.status_code == 503, reply.text
    checks = reply.json()["checks"]
    assert checks["database"].startswith("unreachable: ")
    assert checks["migrations"].startswith("unknown")
    assert reply.json()["reason"].startswith("database: unreachable")


def test_not_ready_once_the_engine_stopped(tmp_path: Path, open_runtimes: list[Runtime]) -> None:
    runtime = Runtime.open(make_settings(tmp_path / "data", engine=True))
    open_runtimes.append(runtime)
    with LiveServer(runtime) as live:
        assert httpx.get(f"{live.url}/readyz", timeout=30).status_code == 200
        runtime.stop_engine()  # what a crashed executor leaves
        reply = httpx.get(f"{live.url}/readyz", timeout=30)
        assert reply.status_code == 503, reply.text
        assert reply.json()["checks"]["engine"] == "not running: no executor in this process"
        app = live.server.config.app
        app.state.supervisor.close()  # the supervisor's loops end
        reply = httpx.get(f"{live.url}/readyz", timeout=30)
        assert reply.json()["checks"]["engine"].startswith("not running: the supervisor")
