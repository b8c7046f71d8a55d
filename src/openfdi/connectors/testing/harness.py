"""Isolated namespaces on real servers for connector tests (one per test and dialect).

A harness gives a test its own SQLite file, PostgreSQL schema or MySQL database, dropped
afterwards, plus an admin connection to set up and inspect data behind the connector's back.
A connector of another package adds its own builder with `register_dialect`.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Connector, ConnectorSpec

__all__ = [
    "DIALECTS",
    "MY",
    "PG",
    "Dialect",
    "Harness",
    "register_dialect",
    "unavailable",
]

PG: dict[str, Any] = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MY: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when CI=true: CI must never pass by skipping the real-server tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


@dataclass
class Harness:
    """One dialect's isolated namespace for one test."""

    name: str
    spec: ConnectorSpec
    content: dict[str, Any]
    admin: Any
    slow_where: str
    """A boolean expression that takes many seconds per row."""
    opened: list[Connector] = field(default_factory=list)
    cleanups: list[str] = field(default_factory=list)
    """Admin SQL to run at teardown, before the namespace is dropped."""
    drop: Callable[[], None] = lambda: None

    def teardown(self) -> None:
        for conn in self.opened:
            conn.close()
        for sql in self.cleanups:
            self.execute(sql)
        self.drop()

    def connector(self, **overrides: Any) -> Connector:
        """A new connector on this namespace, closed at teardown."""
        conn = self.spec.open({**self.content, **overrides})
        self.opened.append(conn)
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run admin SQL (autocommit). Placeholders: %s (?-style for SQLite)."""
        if self.name == "mysql":
            with self.admin.cursor() as cur:
                cur.execute(sql, params or None)
        elif self.name == "postgresql":
            self.admin.execute(sql, params or None)
        else:
            self.admin.execute(sql, params)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.name == "mysql":
            with self.admin.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        return list(self.admin.execute(sql).fetchall())

    def q(self, name: str) -> str:
        quote = "`" if self.name == "mysql" else '"'
        return quote + name.replace(quote, quote * 2) + quote


Builder = Callable[[pytest.FixtureRequest, Path], Harness]


@dataclass(frozen=True)
class Dialect:
    """A connector under conformance test: its FDI type, how to build its harness, and the
    pytest marks its tests carry (the server they need)."""

    type: str
    build: Builder
    marks: tuple[pytest.MarkDecorator, ...] = ()


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    path = tmp_path / "openfdi_test.db"
    admin = sqlite3.connect(path, isolation_level=None)
    slow = (
        "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)"
        " SELECT count(*) FROM c) > 0"
    )
    spec = Registry.discover().get("SQLITE")
    harness = Harness("sqlite", spec, {"database_name": str(path)}, admin, slow, drop=admin.close)
    request.addfinalizer(harness.teardown)
    return harness


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    import psycopg

    database = request.getfixturevalue("pg_database")
    schema = f"s_{secrets.token_hex(4)}"
    admin = psycopg.connect(**PG, dbname=database, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    admin.execute(f'SET search_path TO "{schema}"')

    def drop() -> None:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()

    content = {
        "host": PG["host"],
        "port": str(PG["port"]),
        "database_name": database,
        "user_name": PG["user"],
        "password": "",
        "schema": schema,
    }
    spec = Registry.discover().get("POSTGRESQL")
    slow = "(SELECT true FROM pg_sleep(30))"
    harness = Harness("postgresql", spec, content, admin, slow, drop=drop)
    request.addfinalizer(harness.teardown)
    return harness


def _mysql(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    import pymysql  # type: ignore[import-untyped]

    server = request.getfixturevalue("mysql_server")
    database = f"openfdi_t_{secrets.token_hex(4)}"
    admin = pymysql.connect(**server, autocommit=True, charset="utf8mb4")
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{database}`")

    def drop() -> None:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE `{database}`")
        admin.close()

    content = {
        "host": server["host"],
        "port": server["port"],
        "database_name": database,
        "user_name": server["user"],
        "password": server["password"],
    }
    spec = Registry.discover().get("MYSQL")
    harness = Harness("mysql", spec, content, admin, "SLEEP(30) = 0", drop=drop)
    request.addfinalizer(harness.teardown)
    return harness


DIALECTS: dict[str, Dialect] = {
    "sqlite": Dialect("SQLITE", _sqlite),
    "postgresql": Dialect("POSTGRESQL", _postgres, (pytest.mark.postgres,)),
    "mysql": Dialect("MYSQL", _mysql, (pytest.mark.mysql,)),
}
"""Dialect name used in test ids -> the connector it tests."""


def register_dialect(name: str, dialect: Dialect) -> None:
    """Put another connector under the conformance suite (a plugin's own conftest calls this)."""
    DIALECTS[name] = dialect
