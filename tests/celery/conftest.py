"""The Celery executor's tests: a real RabbitMQ broker (a queue of each test's own), PostgreSQL
metadata (a schema of each test's own), an in-process server publishing the runs, and
`openfdi worker --executor celery` processes executing them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.settings import Settings
from tests.celery.netns import Host, make_hosts
from tests.conftest import make_settings
from tests.services import PG_ADMIN_URL, require

OPENFDI = str(Path(sys.executable).parent / "openfdi")
LEASE_S = 3.0
"""Short, so that a lost worker's run is taken over within seconds."""
PG_CONTENT = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
              "user_name": "postgres", "password": "unused"}  # fmt: skip


BROKERS = {
    "amqp": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/0",
}
REDIS_VISIBILITY_S = 6.0
"""Short, so that a killed worker's unacknowledged message is delivered again within the test
(Redis has no connection-bound acknowledgement; RabbitMQ delivers again at once)."""


@pytest.fixture
def broker() -> str:
    """The broker's kind; a test runs on both with `@pytest.mark.parametrize("broker", …)`."""
    return "amqp"


@pytest.fixture
def queue(broker: str) -> Iterator[str]:
    """A queue of the test's own on the machine's broker (RabbitMQ: and a direct exchange, and
    the fanout exchange of stop hints), deleted after."""
    name = f"openfdi-test-{uuid.uuid4().hex[:12]}"
    if broker == "redis":
        require("redis")
        import redis

        yield name
        with contextlib.closing(redis.Redis(host="127.0.0.1", port=6379)) as client:
            keys = [*client.scan_iter(match=f"{name}*"), f"_kombu.binding.{name}",
                    f"_kombu.binding.{name}.stop-hints"]  # fmt: skip
            client.delete(*keys)
        return
    require("rabbitmq")
    import pika

    yield name
    params = pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")  # pika: vhost "/"
    with contextlib.closing(pika.BlockingConnection(params)) as conn:
        channel = conn.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)
        channel.exchange_delete(f"{name}.stop-hints")  # engine/stop_hints.py


@pytest.fixture
def step_seconds() -> float:
    """The workers' step budget (OPENFDI_CELERY_STEP_SECONDS); a test sets another with
    parametrize."""
    return Settings.model_fields["celery_step_seconds"].default  # type: ignore[no-any-return]


@pytest.fixture
def celery_settings(
    tmp_path: Path, postgres_url: str, broker: str, queue: str, step_seconds: float
) -> Settings:
    return make_settings(tmp_path / "server", postgres_url, engine=True).model_copy(
        update={
            "executor": "celery",
            "celery_broker_url": BROKERS[broker],
            "celery_queue": queue,
            "lease_seconds": LEASE_S,
            # A worker cut off the network loses its broker connection within seconds.
            "celery_broker_heartbeat_seconds": 2.0,
            "celery_visibility_timeout_seconds": REDIS_VISIBILITY_S,
            "celery_step_seconds": step_seconds,
            "secret_key": Fernet.generate_key().decode(),
        }
    )


@pytest.fixture
def runtime(celery_settings: Settings) -> Iterator[Runtime]:
    """The server's runtime (the root conftest's `server`, `sdk` and `signed` use it)."""
    rt = Runtime.open(celery_settings)
    identity.bootstrap(rt)
    yield rt
    rt.close()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema of the `postgres` database for the tasks' source and target tables."""
    require("postgres")
    schema = f"c_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@dataclass
class Workers:
    """`openfdi worker --executor celery` processes, as another host would start them: the
    same database, broker and secret key, a data dir of their own."""

    settings: Settings
    root: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, index: int) -> dict[str, str]:
        s = self.settings
        data_dir = self.root / f"worker-{index}"
        return {
            **os.environ,
            "OPENFDI_DATA_DIR": str(data_dir),
            "OPENFDI_DATABASE_URL": str(s.database_url),
            "OPENFDI_SECRET_KEY": str(s.secret_key),
            "OPENFDI_EXECUTOR": "celery",
            "OPENFDI_CELERY_BROKER_URL": str(s.celery_broker_url),
            "OPENFDI_CELERY_QUEUE": s.celery_queue,
            "OPENFDI_LEASE_SECONDS": str(s.lease_seconds),
            "OPENFDI_STOP_DEADLINE_SECONDS": str(s.stop_deadline_seconds),
            "OPENFDI_CELERY_BROKER_HEARTBEAT_SECONDS": str(s.celery_broker_heartbeat_seconds),
            "OPENFDI_CELERY_VISIBILITY_TIMEOUT_SECONDS": str(s.celery_visibility_timeout_seconds),
            "OPENFDI_CELERY_STEP_SECONDS": str(s.celery_step_seconds),
        }

    def log(self, index: int) -> Path:
        return self.root / f"worker-{index}.log"

    def start(
        self,
        count: int,
        concurrency: int = 2,
        hosts: list[Host] | None = None,
        extra: tuple[str, ...] = (),
    ) -> list[int]:
        """Start `count` workers (the i-th in `hosts[i]`'s namespace, if given; `extra` options
        on the command line) and wait until each is consuming; their pids."""
        first = len(self.procs)
        command = [OPENFDI, "worker", "--executor", "celery", "--no-migrate",
                   "--concurrency", str(concurrency), *extra]  # fmt: skip
        for index in range(first, first + count):
            argv = hosts[index - first].command(command) if hosts else command
            with open(self.log(index), "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        argv, env=self.env(index), stdout=out, stderr=subprocess.STDOUT
                    )
                )
        deadline = time.monotonic() + 90
        for index in range(first, first + count):
            while b" ready." not in self.log(index).read_bytes():
                proc = self.procs[index]
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"worker {index} did not start:\n{self.output(index)}")
                time.sleep(0.1)
        return [p.pid for p in self.procs[first:]]

    def output(self, index: int) -> str:
        return self.log(index).read_text(errors="replace")

    def kill(self, index: int) -> None:
        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(celery_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(celery_settings, tmp_path)
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def hosts(workers: Workers, host_count: int) -> Iterator[list[Host]]:
    """Two test hosts (network namespaces), removed with whatever runs in them afterwards.

    After `workers` (and so the databases): removed first, so that no forwarded connection of
    a worker cut off mid-transaction holds the locks the schemas' removal waits for."""
    made = make_hosts(host_count)
    try:
        yield made
    finally:
        for host in made:
            host.close()


@pytest.fixture
def host_count() -> int:
    """How many test hosts `hosts` makes; a test sets another with parametrize."""
    return 2
