"""Fixtures for the connector conformance suite: one isolated namespace per test and dialect.

Tests take `dialect` (or `source_dialect` and `target_dialect`) and are parametrised over the
registered connectors whose declared capabilities cover `@pytest.mark.needs(...)`. A harness gives
a test its own SQLite file, PostgreSQL schema or MySQL database, dropped afterwards, plus an admin
connection to set up and inspect data behind the connector's back.

An unreachable server skips its tests, except under CI=true, where it fails them.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import Column, Connector, ConnectorSpec, LogicalType, TableSchema

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MY = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}

# Dialect name used in test ids -> FDI datasource type of its registered connector.
DIALECTS = {"sqlite": "SQLITE", "postgresql": "POSTGRESQL", "mysql": "MYSQL"}
MARKS = {"postgresql": [pytest.mark.postgres], "mysql": [pytest.mark.mysql], "sqlite": []}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*capabilities): run once per connector declaring these capabilities"
    )


def _capable(*capabilities: str) -> list[str]:
    registry = Registry.discover()
    return [
        name
        for name, type_name in DIALECTS.items()
        if all(getattr(registry.get(type_name).capabilities, c) for c in capabilities)
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("needs")
    needs = tuple(marker.args) if marker else ()
    if "dialect" in metafunc.fixturenames:
        metafunc.parametrize(
            "dialect", [pytest.param(n, marks=MARKS[n], id=n) for n in _capable(*needs)]
        )
    if {"source_dialect", "target_dialect"} <= set(metafunc.fixturenames):
        pairs = [
            pytest.param(s, t, marks=MARKS[s] + MARKS[t], id=f"{s}-to-{t}")
            for s in _capable("read")
            for t in _capable("write")
        ]
        metafunc.parametrize(("source_dialect", "target_dialect"), pairs)


def unavailable(reason: str) -> None:
    """Skip, or fail when CI=true: CI must never pass by skipping the real-server tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for this test session, dropped at the end."""
    try:
        admin = psycopg.connect(**PG, dbname="postgres", autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL at {PG['host']}:{PG['port']} is not reachable: {exc}")
    name = f"openfdi_t_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def mysql_server() -> dict[str, Any]:
    """Connection parameters of a reachable MariaDB/MySQL server."""
    try:
        pymysql.connect(**MY, connect_timeout=3).close()
    except pymysql.err.Error as exc:
        unavailable(f"MariaDB at {MY['host']}:{MY['port']} is not reachable: {exc}")
    return MY


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


_BUILDERS: dict[str, Callable[[pytest.FixtureRequest, Path], Harness]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "mysql": _mysql,
}


@pytest.fixture
def make_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Harness]:
    """Build (once per test) the harness of a dialect; each is torn down after the test."""
    built: dict[str, Harness] = {}

    def make(name: str) -> Harness:
        if name not in built:
            built[name] = _BUILDERS[name](request, tmp_path)
        return built[name]

    return make


@pytest.fixture
def harness(dialect: str, make_harness: Callable[[str], Harness]) -> Harness:
    return make_harness(dialect)


# --- the canonical typed table used by the round-trip tests ----------------------------------


def _col(name: str, kind: LogicalType, **extra: Any) -> Column:
    return Column(name, kind, **extra)


CANONICAL_SCHEMA = TableSchema(
    "typed",
    (
        _col("id", LogicalType.BIGINT, nullable=False, is_primary_key=True),
        _col("i", LogicalType.INT),
        _col("s", LogicalType.SMALLINT),
        _col("d", LogicalType.DECIMAL, precision=12, scale=2),
        _col("wide", LogicalType.DECIMAL, precision=38, scale=10),
        _col("x", LogicalType.DOUBLE),
        _col("f", LogicalType.FLOAT),
        _col("v", LogicalType.VARCHAR, length=32),
        _col("t", LogicalType.TEXT),
        _col("b", LogicalType.BOOLEAN),
        _col("dt", LogicalType.DATE),
        _col("tm", LogicalType.TIME),
        _col("ts", LogicalType.TIMESTAMP),
        _col("tz", LogicalType.TIMESTAMPTZ),
        _col("bin", LogicalType.BINARY),
        _col("j", LogicalType.JSON),
    ),
    ("id",),
)

_MEGA_TEXT = ("x" * 1023 + "€") * 1024  # ~1 MiB of characters, some of them multi-byte
_MEGA_BYTES = bytes(range(256)) * 4096  # 1 MiB, every byte value

CANONICAL_ROWS: list[tuple[Any, ...]] = [
    (
        1,
        2147483647,
        32767,
        Decimal("12345678.90"),
        Decimal("1234567890123456789012345678.0123456789"),
        0.1 + 0.2,
        0.5,
        "héllo wörld ✓ 🎉 'quoted' \\ \t",
        "line one\nline two, ünïcödé 中文",
        True,
        date(1999, 12, 31),
        time(23, 59, 59, 999999),
        datetime(2024, 2, 29, 23, 59, 59, 999999),
        datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        bytes(range(256)),
        '{"a": [1, 2.5, "ü"], "b": null}',
    ),
    (
        2,
        -2147483648,
        -32768,
        Decimal("-0.01"),
        Decimal("-0.0000000001"),
        -1.7976931348623157e308,
        3.1415927,
        "",
        "",
        False,
        date(1970, 1, 1),
        time(0, 0),
        datetime(1970, 1, 1, 0, 0, 0, 1),
        datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        b"",
        "[]",
    ),
    (9223372036854775807, *([None] * 15)),
    (
        4,
        0,
        0,
        Decimal("0.00"),
        Decimal("99999999999999999999999999.9999999999"),
        5e-324,
        -1e-30,
        "z" * 32,
        _MEGA_TEXT,
        True,
        date(2000, 2, 29),
        time(12, 0, 0, 1),
        datetime(2000, 1, 1),
        datetime(2000, 1, 1, tzinfo=UTC),
        _MEGA_BYTES,
        '"just a string"',
    ),
]


@pytest.fixture
def canonical_schema() -> TableSchema:
    """A table with one column of every logical type, keyed on `id`."""
    return CANONICAL_SCHEMA


@pytest.fixture
def canonical_rows() -> list[tuple[Any, ...]]:
    """Edge values of every type (extremes, NULLs, unicode, ~1 MiB text and binary)."""
    return list(CANONICAL_ROWS)
