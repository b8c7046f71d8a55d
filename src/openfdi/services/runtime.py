"""The composition root of the services: settings, database, secret box, clock, built once."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy.engine import make_url

from openfdi import logs
from openfdi.connectors.errors import TerminalConnectorError
from openfdi.connectors.postgres.connector import database_identity
from openfdi.connectors.registry import Registry, default_registry
from openfdi.connectors.spi import HostPaths, OwnDatabase
from openfdi.engine.executing import Executor
from openfdi.engine.executor import LocalExecutor
from openfdi.engine.runner import EngineSettings
from openfdi.settings import Settings
from openfdi.store.crypto import SecretBox
from openfdi.store.db import Database

if TYPE_CHECKING:
    from openfdi.engine.celery_queue import CeleryDispatcher

_log = logging.getLogger(__name__)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})


def host_paths(settings: Settings, metadata_identity: str | None = None) -> HostPaths:
    """Where connectors may open local files: the allowed SQLite and FILE roots, never the data
    dir or the metadata database (with its -wal, -shm and -journal files) wherever it lives;
    and, when the metadata database is on PostgreSQL, that database (`metadata_identity`: what
    the server says it is, see `metadata_database_identity`), which no data source may reach."""
    forbidden: list[Path] = [settings.data_dir]
    own: list[OwnDatabase] = []
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        db = Path(str(url.database))
        forbidden += [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    elif url.get_backend_name() == "postgresql":
        host = (url.host or "localhost").lower()  # no host: libpq's local socket
        hosts = frozenset({host, *(_LOOPBACK if host in _LOOPBACK else ())})
        database = url.database or url.username or "postgres"
        own.append(OwnDatabase("POSTGRESQL", hosts, url.port or 5432, database, metadata_identity))
    return HostPaths(
        roots=settings.allowed_sqlite_roots,
        forbidden=tuple(forbidden),
        own_databases=tuple(own),
        file_roots=settings.allowed_file_roots,
        denied_networks=settings.api_denied_networks,
        allowed_networks=settings.api_allowed_networks,
    )


def metadata_database_identity(db: Database) -> str | None:
    """What a PostgreSQL metadata database's server says it is (`database_identity`); None on
    SQLite, whose file the path checks keep out of reach."""
    if db.engine.dialect.name != "postgresql":
        return None
    try:
        with db.engine.connect() as conn:
            driver = conn.connection.driver_connection
            if not isinstance(driver, psycopg.Connection):  # pragma: no cover - always psycopg
                return None
            return database_identity(driver)
    except (psycopg.Error, TerminalConnectorError) as exc:
        # Not fatal: data sources naming the metadata database's address are still refused.
        _log.warning("cannot tell the metadata database's identity (%s): a data source "
                     "reaching it by another address is not refused", exc)  # fmt: skip
        return None


@dataclass
class Runtime:
    settings: Settings
    db: Database
    box: SecretBox
    clock_ms: Callable[[], int] = field(default=_wall_clock_ms)
    executor: Executor | None = None
    """Runs tasks in this process; None where no engine runs (the admin CLI, some tests)."""

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        logs.configure()  # every process opens one: the server and each worker process
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        if migrate:
            db.migrate()
        if settings.secret_key:
            box = SecretBox(settings.secret_key.encode())
        else:
            box = SecretBox.from_key_file(settings.key_file)
        return cls(settings=settings, db=db, box=box)

    @functools.cached_property
    def registry(self) -> Registry:
        """The installed connectors, opening local files only where the settings allow."""
        identity = metadata_database_identity(self.db)
        return default_registry().bound(host_paths(self.settings, identity))

    @property
    def runs_in_worker_processes(self) -> bool:
        """Runs execute in local `openfdi worker` processes, not in this one (with the Celery
        executor this process publishes them instead: `start_engine`)."""
        s = self.settings
        return s.engine_enabled and s.executor == "local" and s.worker_processes > 0

    def start_engine(self) -> Executor:
        """The executor runs are handed to: this process's threads, or with
        OPENFDI_EXECUTOR=celery the broker (see `start_dispatcher`)."""
        if self.settings.executor == "celery":
            return self.start_dispatcher()
        return self.start_local_engine()

    def start_local_engine(self) -> LocalExecutor:
        """Threads of this process executing runs (`openfdi serve`, `openfdi worker`)."""
        if isinstance(self.executor, LocalExecutor):
            return self.executor
        if self.executor is None:
            s = self.settings
            local = LocalExecutor(
                self.db,
                self.registry,
                self.clock_ms,
                settings=EngineSettings(
                    poll_interval_s=s.poll_interval_seconds, dirty_limit=s.dirty_data_limit
                ),
                lease_s=s.lease_seconds,
                stop_deadline_s=s.stop_deadline_seconds,
                workers=s.run_workers,
            )
            self.executor = local
            return local
        raise RuntimeError("this process already hands its runs to another executor")

    def start_dispatcher(self) -> CeleryDispatcher:
        """Runs published to the Celery broker, one message each, for `openfdi worker
        --executor celery` processes on any host."""
        from openfdi.engine.celery_queue import CeleryDispatcher, celery_app

        if isinstance(self.executor, CeleryDispatcher):
            return self.executor
        if self.executor is not None:
            raise RuntimeError("this process already executes its runs itself")
        s = self.settings
        dispatcher = CeleryDispatcher(
            celery_app(s), s.celery_queue, self.db, self.clock_ms, lease_s=s.lease_seconds
        )
        self.executor = dispatcher
        return dispatcher

    def stop_engine(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None

    def close(self) -> None:
        self.stop_engine()
        self.db.dispose()
