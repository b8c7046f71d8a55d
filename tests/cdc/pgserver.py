"""A PostgreSQL server of the tests' own with wal_level=logical: initdb in a temporary directory,
on a free loopback port, run as the `postgres` user (PostgreSQL refuses root). The machine's
server (wal_level=replica) is left as it is."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> None:
    """Skip on a developer machine without PostgreSQL binaries; fail under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing server fails the suite)")
    pytest.skip(reason)


class LogicalPostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="openfdi-cdc-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _as_postgres(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def init(self) -> None:
        initdb, postgres = _bin("initdb"), _bin("postgres")
        if initdb is None or postgres is None:
            unavailable("PostgreSQL's initdb/postgres binaries are not installed")
        self.postgres = str(postgres)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                str(initdb), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.start()
        for name in ("src", "dst"):
            with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self._as_postgres(
                self.postgres,
                "-D", str(self.data),
                "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.dir}",
                "-c", "wal_level=logical",
                "-c", "max_replication_slots=40",
                "-c", "max_wal_senders=40",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "shared_buffers=32MB",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the test PostgreSQL did not start") from None
                time.sleep(0.1)

    def kill9(self) -> None:
        """kill -9 the postmaster (its backends end as it goes), then start it again: crash
        recovery replays the WAL."""
        assert self.proc is not None
        os.kill(self._postmaster_pid(), signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.1)
        time.sleep(0.5)  # the orphaned backends notice their postmaster is gone and exit
        self.start()

    def _postmaster_pid(self) -> int:
        # Not self.proc's pid where we run as root: runuser forks and does not pass signals on.
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                os.kill(self._postmaster_pid(), signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def content(self, database: str) -> dict[str, str]:
        return {
            "host": "127.0.0.1",
            "port": str(self.port),
            "database_name": database,
            "user_name": "postgres",
            "password": "",
        }
