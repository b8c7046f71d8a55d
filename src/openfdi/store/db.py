"""Engines and sessions for the metadata database (SQLite by default, PostgreSQL by URL).

Transactions come in two kinds, `read()` and `write()`, as ORM sessions; hot paths that need no
ORM objects use Core connections instead, `write_conn()` and `lookup()` (a Core statement costs a
fraction of the ORM's bookkeeping). On SQLite a write transaction starts with `BEGIN IMMEDIATE`,
so two writers queue on the database lock up front instead of both reading under a shared lock
and then failing to upgrade it (SQLITE_BUSY mid-transaction).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


SQLITE_BUSY_TIMEOUT_MS = 30_000


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL, retrying while another connection holds a lock.

    The switch needs the file to itself, and SQLite answers SQLITE_BUSY at once, without the
    busy handler, when this connection's read lock meets another's pending write (deadlock
    avoidance). Processes opening one fresh file together (a fleet migrating at start) met
    that: 1 in 8 tries of 8 processes failed "database is locked". Once the file is in WAL
    mode (a persistent setting) the statement takes no write lock and succeeds at once.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so `_begin_with` decides.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # wait, do not fail
        _enable_wal(cursor)  # readers never block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode, far fewer fsyncs
        cursor.close()


PING_AFTER_IDLE_S = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection is alive before use, if it sat idle for a while.

    `pool_pre_ping` would cost a round trip on every checkout: five per scheduled run, a third
    of its statements. A connection in constant use needs none (if the server went away, its
    next statement fails, and SQLAlchemy then discards every pooled connection), so only those
    idle longer than `PING_AFTER_IDLE_S`, the ones a server restart or an idle timeout may have
    closed unnoticed, are pinged; a dead one is replaced (the pool retries on DisconnectionError).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            with dbapi_conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc


def _begin_with(engine: Engine, statement: str) -> Engine:
    """A view of the SQLite engine whose transactions start with `statement`.

    The listener lives on the view only: any connection event listener makes SQLAlchemy run
    its event hooks around every statement, which the plain engine (`lookup`) is spared.
    """
    view = engine.execution_options()

    @event.listens_for(view, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to the driver: exec_driver_sql would build a whole execution context for a
        # fixed statement, on every transaction.
        conn.connection.driver_connection.execute(statement)

    return view


class Database:
    """One engine, and the session and connection factories the services use."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16
            )
            _configure_sqlite(self.engine)
            reader = _begin_with(self.engine, "BEGIN")
            writer = _begin_with(self.engine, "BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(url, pool_size=16, max_overflow=16)
            _ping_idle_connections(self.engine)
            reader = writer = self.engine
        # SQLite has one writer at a time, and its busy handler (sleep and retry) is unfair: under
        # load some writers wait far longer than others. Queueing this process's writers on a
        # lock first makes the wait first-come first-served; the busy handler remains for
        # writers in other processes (the admin CLI).
        self._write_queue: AbstractContextManager[object] = (
            threading.Lock() if self.is_sqlite else nullcontext()
        )
        self._write_engine = writer
        self._reader = sessionmaker(reader, expire_on_commit=False)
        self._writer = sessionmaker(writer, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._write_queue, self._writer() as session, session.begin():
            yield session

    @contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """`write()` on a Core connection: commits on success, rolls back on any exception."""
        with self._write_queue, self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def lookup(self) -> Iterator[Connection]:
        """A Core connection for reads of a single statement each, atomic on its own.

        For hot point reads (a credential): on SQLite no BEGIN and ROLLBACK wrap the statement
        and no event hooks run, together more than the read itself costs.
        """
        with self.engine.connect() as conn:
            yield conn

    def revision(self) -> str | None:
        """The migration the database is at (None: not migrated yet)."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:  # no alembic_version table yet
            return None

    def migrate(self) -> None:
        """Apply every Alembic migration up to head (idempotent), in one transaction.

        Processes starting together (a server and its workers, a fleet) may all find the
        database behind: on PostgreSQL each first takes a transaction-scoped advisory lock of
        the schema, so they migrate one after the other and the later ones find it at head
        (Alembic reads the version inside the lock; DDL is transactional there). On SQLite the
        transaction starts with BEGIN IMMEDIATE, which queues them the same way.

        At head already (every start but the first), Alembic is not even imported: it costs
        the long-running server 10 MiB it would never use again.
        """
        if self.revision() == head_revision():
            return
        from alembic import command

        with self._write_engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(_MIGRATION_LOCK)
            config = alembic_config(self.url)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()


# The advisory lock key pair: "ofdi" as a 32-bit integer, and the schema being migrated
# (several openfdi databases may share one PostgreSQL database in different schemas).
_MIGRATION_LOCK = text(
    "SELECT pg_advisory_xact_lock(1868981353, hashtext(coalesce(current_schema(), '')))"
)


def head_revision() -> str:
    """The newest migration, from the file names (`NNNN_name.py`, revision ids in order); a
    test checks it is the head Alembic computes."""
    names = (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max(path.name[:4] for path in names)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
