"""Shared fixtures: a real openfdi server on loopback (SQLite or PostgreSQL metadata), the
official SDK pointed at it, and signed / token HTTP clients.

Every test gets its own data dir and, on PostgreSQL, its own schema; nothing is shared.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from openfdi.api.app import create_app
from openfdi.client import signed_client
from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.settings import Settings
from tests.e2e.process import Served
from tests.services import PG_ADMIN_URL, require

PROJECT_ID = "a4a5d4098fb4474fa22cd05f897d6b99"
INSTANCE_ID = "3f2b6c1e-8a4d-4f6e-9b1a-2c3d4e5f6a7b"
AK = "TESTAK00000000000001"
SK = "testSecretKey000000000000000000000000001"
USER = "tester"
PASSWORD = "tester-password"


@dataclass(frozen=True)
class Credentials:
    project_id: str = PROJECT_ID
    instance_id: str = INSTANCE_ID
    ak: str = AK
    sk: str = SK
    user: str = USER
    password: str = PASSWORD


# Metadata lives in a database of its own, as in production: a data source may not reach
# openfdi's metadata database, and the tests' data sources use `postgres`.
METADATA_DATABASE = "openfdi_test_metadata"


def _metadata_database() -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (METADATA_DATABASE,)
        ).fetchone():
            return
        # Another test process may make it at the same moment.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            conn.execute(f'CREATE DATABASE "{METADATA_DATABASE}"')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema of the metadata database, dropped afterwards; the URL pins
    search_path to it."""
    require("postgres")
    _metadata_database()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{METADATA_DATABASE}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{METADATA_DATABASE}"
            f"?options=-csearch_path%3D{schema}"
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def make_settings(
    data_dir: Path, database_url: str | None = None, *, engine: bool = False
) -> Settings:
    """Control-plane tests run without the engine: no run happens unless a test asks for one.

    SQLite data sources may name files anywhere under the temporary directory (the tests' own
    `tmp_path`s), never in `data_dir` (which is inside it too)."""
    c = Credentials()
    return Settings(
        data_dir=data_dir,
        sqlite_roots=(Path(tempfile.gettempdir()),),
        database_url=database_url,
        engine_enabled=engine,
        poll_interval_seconds=0.2,
        bootstrap_project_id=c.project_id,
        bootstrap_instance_id=c.instance_id,
        bootstrap_ak=c.ak,
        bootstrap_sk=c.sk,
        bootstrap_user=c.user,
        bootstrap_password=c.password,
    )


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The metadata database; tests that must run on both parametrize this indirectly."""
    return str(request.param)


@pytest.fixture
def engine_enabled() -> bool:
    """Overridden to True by the engine's tests (tests/engine/conftest.py)."""
    return False


@pytest.fixture
def runtime(
    tmp_path: Path, backend: str, engine_enabled: bool, request: pytest.FixtureRequest
) -> Iterator[Runtime]:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    rt = Runtime.open(make_settings(tmp_path / "data", url, engine=engine_enabled))
    identity.bootstrap(rt)
    yield rt
    rt.close()


class LiveServer:
    """uvicorn serving the app on 127.0.0.1 with an OS-chosen port, in a background thread."""

    def __init__(self, runtime: Runtime) -> None:
        config = uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=0, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server(runtime: Runtime) -> Iterator[LiveServer]:
    with LiveServer(runtime) as live:
        yield live


@pytest.fixture
def creds() -> Credentials:
    return Credentials()


@pytest.fixture
def base_path(creds: Credentials) -> str:
    return f"/v2/{creds.project_id}/fdi/instances/{creds.instance_id}"


@pytest.fixture
def signed(server: LiveServer, creds: Credentials) -> Iterator[httpx.Client]:
    """Raw HTTP, signed with the AK/SK exactly as the SDK signs."""
    with signed_client(server.url, creds.ak, creds.sk, creds.project_id) as client:
        yield client


@pytest.fixture
def token(server: LiveServer, creds: Credentials) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": creds.user, "password": creds.password}},
            },
            "scope": {"project": {"id": creds.project_id}},
        }
    }
    reply = httpx.post(f"{server.url}/v3/auth/tokens", json=body)
    assert reply.status_code == 201, reply.text
    return reply.headers["X-Subject-Token"]


@pytest.fixture
def anon(server: LiveServer) -> Iterator[httpx.Client]:
    """Raw HTTP with no credentials at all."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def sdk(server: LiveServer, creds: Credentials):  # type: ignore[no-untyped-def]
    """The official Huawei Cloud SDK client, pointed at the live server."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkroma.v2 import RomaClient

    credentials = BasicCredentials(ak=creds.ak, sk=creds.sk, project_id=creds.project_id)
    return (
        RomaClient.new_builder().with_credentials(credentials).with_endpoints([server.url]).build()
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A real `openfdi serve --demo` process on a free loopback port, killed afterwards."""
    s = Served(tmp_path)
    s.start()
    try:
        yield s
    finally:
        if s.proc is not None:
            s.proc.kill()
            s.proc.wait()
