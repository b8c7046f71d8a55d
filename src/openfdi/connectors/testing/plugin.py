"""The conformance suite's pytest plugin: fixtures and parametrisation by declared capabilities.

A test takes `dialect` (or `source_dialect` and `target_dialect`) and runs once per registered
connector (see `harness.DIALECTS`) whose capabilities cover `@pytest.mark.needs(...)`. Use it
from a conftest with `from openfdi.connectors.testing.plugin import *`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import TableSchema
from openfdi.connectors.testing.canonical import CANONICAL_ROWS, CANONICAL_SCHEMA
from openfdi.connectors.testing.harness import DIALECTS, MY, PG, Harness, unavailable

__all__ = [
    "canonical_rows",
    "canonical_schema",
    "capable",
    "harness",
    "make_harness",
    "mysql_server",
    "pg_database",
    "pytest_configure",
    "pytest_generate_tests",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*capabilities): run once per connector declaring these capabilities"
    )


def capable(*capabilities: str) -> list[str]:
    """The dialects whose connector declares every one of `capabilities`."""
    registry = Registry.discover()
    return [
        name
        for name, dialect in DIALECTS.items()
        if all(getattr(registry.get(dialect.type).capabilities, c) for c in capabilities)
    ]


def _marks(name: str) -> list[pytest.MarkDecorator]:
    return list(DIALECTS[name].marks)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("needs")
    needs = tuple(marker.args) if marker else ()
    if "dialect" in metafunc.fixturenames:
        metafunc.parametrize(
            "dialect", [pytest.param(n, marks=_marks(n), id=n) for n in capable(*needs)]
        )
    if {"source_dialect", "target_dialect"} <= set(metafunc.fixturenames):
        pairs = [
            pytest.param(s, t, marks=_marks(s) + _marks(t), id=f"{s}-to-{t}")
            for s in capable("read")
            for t in capable("write")
        ]
        metafunc.parametrize(("source_dialect", "target_dialect"), pairs)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for this test session, dropped at the end."""
    import psycopg

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
    import pymysql  # type: ignore[import-untyped]

    try:
        pymysql.connect(**MY, connect_timeout=3).close()
    except pymysql.err.Error as exc:
        unavailable(f"MariaDB at {MY['host']}:{MY['port']} is not reachable: {exc}")
    return MY


@pytest.fixture
def make_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Harness]:
    """Build (once per test) the harness of a dialect; each is torn down after the test."""
    built: dict[str, Harness] = {}

    def make(name: str) -> Harness:
        if name not in built:
            built[name] = DIALECTS[name].build(request, tmp_path)
        return built[name]

    return make


@pytest.fixture
def harness(dialect: str, make_harness: Callable[[str], Harness]) -> Harness:
    return make_harness(dialect)


@pytest.fixture
def canonical_schema() -> TableSchema:
    """A table with one column of every logical type, keyed on `id`."""
    return CANONICAL_SCHEMA


@pytest.fixture
def canonical_rows() -> list[tuple[Any, ...]]:
    """Edge values of every type (extremes, NULLs, unicode, ~1 MiB text and binary)."""
    return list(CANONICAL_ROWS)
