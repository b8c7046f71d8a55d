"""Discovery through entry points, lazy loading, and "unavailable: reason" instead of a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from openfdi.connectors import registry
from openfdi.connectors.errors import ConnectorNotFoundError, ConnectorUnavailableError
from openfdi.connectors.mysql import SPEC as MYSQL_SPEC
from openfdi.connectors.postgres import SPEC as POSTGRES_SPEC
from openfdi.connectors.registry import GROUP, Registry
from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec
from openfdi.connectors.sqlite import SPEC as SQLITE_SPEC
from openfdi.connectors.sqlite.connector import SqliteConnector

NOT_CONNECTORS = {
    "testing",  # the conformance harness
    "cdc",  # the log reader of composite tasks: the engine's CDC run kind opens it, no registry
}


def _built_in_connector_types() -> set[str]:
    """The types of the connector packages shipped in openfdi.connectors (each exports SPEC)."""
    import importlib
    import pkgutil

    import openfdi.connectors as package

    types = set()
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg and not info.name.startswith("_") and info.name not in NOT_CONNECTORS:
            module = importlib.import_module(f"openfdi.connectors.{info.name}")
            types.add(module.SPEC.type.upper())
    return types


def test_built_in_connectors_are_registered_as_entry_points() -> None:
    # Every shipped connector package is an entry point, and none is unavailable.
    built_in = _built_in_connector_types()
    assert {"MEMORY", "MYSQL", "POSTGRESQL", "SQLITE", "RABBITMQ"} <= built_in
    assert registry.available() == dict.fromkeys(built_in)
    assert registry.get("sqlite") is SQLITE_SPEC
    assert registry.get("POSTGRESQL") is POSTGRES_SPEC
    assert registry.get("MySQL") is MYSQL_SPEC


def test_specs_declare_what_the_engine_needs() -> None:
    for spec in (SQLITE_SPEC, POSTGRES_SPEC, MYSQL_SPEC):
        caps = spec.capabilities
        assert (caps.read, caps.write, caps.incremental, caps.bulk) == (True, True, True, True)
    assert POSTGRES_SPEC.required_content == ("host", "port", "database_name", "user_name")
    assert SQLITE_SPEC.required_content == ("database_name",)


def test_open_builds_a_connector_without_connecting() -> None:
    conn = registry.default_registry().open("SQLITE", {"database_name": "/nonexistent/x.db"})
    assert isinstance(conn, SqliteConnector)
    conn.close()


def test_unknown_type_is_not_found() -> None:
    with pytest.raises(ConnectorNotFoundError, match="ORACLE"):
        registry.get("ORACLE")


def _missing_driver() -> type[Connector]:
    import openfdi_no_such_driver  # type: ignore[import-not-found]  # noqa: F401

    raise AssertionError("unreachable")


def test_a_missing_driver_makes_the_type_unavailable_with_the_reason() -> None:
    spec = ConnectorSpec("REDIS", ("host",), Capabilities(read=True), _missing_driver)
    reg = Registry([spec, SQLITE_SPEC])

    assert reg.available() == {
        "REDIS": "ModuleNotFoundError: No module named 'openfdi_no_such_driver'",
        "SQLITE": None,
    }
    with pytest.raises(ConnectorUnavailableError, match="openfdi_no_such_driver"):
        reg.get("redis")
    assert reg.get("sqlite") is SQLITE_SPEC


def test_broken_entry_points_are_listed_not_fatal() -> None:
    entries = [
        EntryPoint("sqlite", "openfdi.connectors.sqlite:SPEC", GROUP),
        EntryPoint("ftp", "openfdi.connectors.no_such_module:SPEC", GROUP),
        EntryPoint("odd", "openfdi.connectors.spi:Capabilities", GROUP),
    ]
    reg = Registry.discover(entries)

    status = reg.available()
    assert status["SQLITE"] is None
    assert "no_such_module" in str(status["FTP"])
    assert "not a ConnectorSpec" in str(status["ODD"])
    with pytest.raises(ConnectorUnavailableError):
        reg.get("FTP")


def test_duplicate_types_keep_the_first_and_say_so() -> None:
    reg = Registry([SQLITE_SPEC, SQLITE_SPEC])
    assert reg.types() == ["SQLITE"]
    assert reg.get("SQLITE") is SQLITE_SPEC


def test_importing_a_spec_does_not_import_its_driver() -> None:
    # In a fresh interpreter where psycopg cannot be imported, openfdi still lists connectors.
    code = (
        "import sys, json\n"
        "sys.modules['psycopg'] = None\n"
        "from openfdi.connectors import registry\n"
        "print(json.dumps(registry.available()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    status = json.loads(out.stdout)
    assert status["SQLITE"] is None
    assert status["MYSQL"] is None
    assert "psycopg" in str(status["POSTGRESQL"])


def test_required_content_is_declared_once_in_the_spec() -> None:
    """Create/update validation reads a type's required fields from its connector's spec."""
    spec = ConnectorSpec("ZZZ", ("host", "vhost"), Capabilities(read=True), lambda: Connector)
    reg = Registry([spec])
    assert reg.required_content("zzz") == ("host", "vhost")
    assert reg.required_content("NOPE") is None
    assert registry.default_registry().required_content("MYSQL") == MYSQL_SPEC.required_content
