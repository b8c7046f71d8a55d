"""A MariaDB server of the tests' own with a row-format binary log: mariadb-install-db in a
temporary directory, on a free loopback port and a socket in that directory, run as the `mysql`
user when the tests run as root. The machine's server (port 3306, no binlog) is left alone."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]

from tests.cdc.pgserver import _free_port, unavailable

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
USER, PASSWORD = "cdc", "cdc-secret"


class BinlogMariaDB:
    def __init__(self, *extra: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="openfdi-cdc-maria-"))
        self.data = self.dir / "data"
        self.socket = self.dir / "mariadb.sock"
        # Its own temporary files' directory: with /tmp, the bootstrap of a server started at
        # the same moment by another test process (or a killed server's leftovers) broke this
        # one's ("Could not remove temporary table: '/tmp/#sql-temptable-…'").
        self.tmp = self.dir / "tmp"
        self.tmp.mkdir()
        self.port = _free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def _owner(self) -> list[str]:
        return ["--user=mysql"] if os.geteuid() == 0 else []

    def init(self) -> None:
        if not (os.path.exists(MARIADBD) and os.path.exists(INSTALL_DB)):
            unavailable("MariaDB's mariadbd/mariadb-install-db binaries are not installed")
        if os.geteuid() == 0:
            for owned in (self.dir, self.tmp):
                shutil.chown(owned, "mysql", "mysql")
        done = subprocess.run(
            [
                INSTALL_DB,
                *self._owner(),
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--no-defaults",
                f"--tmpdir={self.tmp}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if done.returncode != 0:
            unavailable(f"mariadb-install-db failed: {done.stderr.decode()[-500:]}")
        self.start()
        with self.root() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%'")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                *self._owner(),
                f"--datadir={self.data}",
                f"--tmpdir={self.tmp}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.dir / 'mariadb.pid'}",
                "--log-bin=binlog",
                "--server-id=7",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=48M",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=1",
                "--sync-binlog=1",
                "--max-allowed-packet=64M",  # rows of more than 16 MiB: events of 2 packets
                f"--log-error={self.dir / 'error.log'}",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with self.root():
                    return
            except pymysql.err.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "error.log").read_text(errors="replace")[-800:]
                    unavailable(f"mariadbd did not start: {log}")
                time.sleep(0.2)

    def root(self, database: str | None = None) -> Any:
        return pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, autocommit=True,
            charset="utf8mb4",
        )  # fmt: skip

    def connect(self, database: str | None = None) -> Any:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, database=database,
            autocommit=True, charset="utf8mb4",
        )  # fmt: skip

    def content(self, database: str) -> dict[str, str]:
        return {
            "host": "127.0.0.1",
            "port": str(self.port),
            "database_name": database,
            "user_name": USER,
            "password": PASSWORD,
        }

    def kill9(self) -> None:
        """kill -9 the server, then start it again on the same data (crash recovery)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)
