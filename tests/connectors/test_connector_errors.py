"""The error seam: every driver exception becomes transient or terminal, secrets never leak."""

from __future__ import annotations

import inspect
import sqlite3
from typing import Any

import psycopg
import psycopg.errors
import pymysql
import pytest

from openfdi.connectors.errors import (
    ConnectorError,
    InvalidContentError,
    QueryCancelledError,
    TableNotFoundError,
    TerminalConnectorError,
    TransientConnectorError,
    redact,
    translating,
)
from openfdi.connectors.mysql import errors as mysql_errors
from openfdi.connectors.postgres import errors as pg_errors
from openfdi.connectors.spi import ReadPlan
from openfdi.connectors.sqlite import connector as sqlite_connector
from openfdi.connectors.sqlite import errors as sqlite_errors

SECRET = "hunter2-Sup3rSecret"


def test_redact_masks_secret_values_and_inline_credentials() -> None:
    text = f"failed: password={SECRET} url=postgresql://bob:{SECRET}@db/x token {SECRET}!"
    out = redact(text, [SECRET, ""])
    assert SECRET not in out
    assert out.count("******") == 3
    assert redact("password='a b' next", []) == "password=****** next"
    assert redact("mysql://u:pw@host/db", []) == "mysql://u:******@host/db"


def test_translating_redacts_and_drops_a_leaking_cause() -> None:
    def translate(exc: BaseException) -> ConnectorError | None:
        return TerminalConnectorError(str(exc)) if isinstance(exc, KeyError) else None

    with pytest.raises(TerminalConnectorError) as caught, translating(translate, [SECRET]):
        raise KeyError(f"bad {SECRET}")
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None  # the driver's text held the secret

    with pytest.raises(TerminalConnectorError) as caught, translating(translate, [SECRET]):
        raise KeyError("harmless")
    assert isinstance(caught.value.__cause__, KeyError)

    with pytest.raises(ZeroDivisionError), translating(translate, [SECRET]):
        raise ZeroDivisionError  # not a driver error: a bug, left as it is


def _driver_classes(module: Any, base: type[BaseException]) -> list[type[BaseException]]:
    return [
        cls for _name, cls in inspect.getmembers(module, inspect.isclass) if issubclass(cls, base)
    ]


def test_every_psycopg_exception_class_is_mapped() -> None:
    classes = _driver_classes(psycopg.errors, psycopg.Error)
    assert len(classes) > 200
    for cls in classes:
        mapped = pg_errors.translate(cls("boom"), cancelled=False)
        assert isinstance(mapped, TransientConnectorError | TerminalConnectorError), cls


def test_every_pymysql_exception_class_is_mapped() -> None:
    for cls in _driver_classes(pymysql.err, pymysql.err.MySQLError):
        mapped = mysql_errors.translate(cls(1064, "boom"), cancelled=False)
        assert isinstance(mapped, TransientConnectorError | TerminalConnectorError), cls


def test_every_sqlite3_exception_class_is_mapped() -> None:
    for cls in _driver_classes(sqlite3, sqlite3.Error):
        mapped = sqlite_errors.translate(cls("boom"), cancelled=False)
        assert isinstance(mapped, TransientConnectorError | TerminalConnectorError), cls


@pytest.mark.parametrize(
    ("exc", "cancelled", "expected"),
    [
        (psycopg.errors.lookup("40001")("serialization"), False, TransientConnectorError),
        (psycopg.errors.lookup("40P01")("deadlock"), False, TransientConnectorError),
        (psycopg.errors.lookup("57P01")("admin shutdown"), False, TransientConnectorError),
        (psycopg.errors.lookup("08006")("connection failure"), False, TransientConnectorError),
        (psycopg.errors.lookup("57014")("statement timeout"), False, TransientConnectorError),
        (psycopg.errors.lookup("57014")("canceled"), True, QueryCancelledError),
        (psycopg.errors.lookup("42P01")("no table"), False, TableNotFoundError),
        (psycopg.errors.lookup("42601")("syntax"), False, TerminalConnectorError),
        (psycopg.errors.lookup("42501")("permission"), False, TerminalConnectorError),
        (psycopg.errors.lookup("28P01")("auth"), False, TerminalConnectorError),
        (psycopg.OperationalError("connection refused"), False, TransientConnectorError),
        (
            psycopg.OperationalError('password authentication failed for user "x"'),
            False,
            TerminalConnectorError,
        ),
    ],
)
def test_postgres_errors_are_classified(
    exc: Exception, cancelled: bool, expected: type[ConnectorError]
) -> None:
    assert type(pg_errors.translate(exc, cancelled=cancelled)) is expected


@pytest.mark.parametrize(
    ("code", "cancelled", "expected"),
    [
        (2003, False, TransientConnectorError),
        (2013, False, TransientConnectorError),
        (1213, False, TransientConnectorError),
        (1205, False, TransientConnectorError),
        (1317, False, TransientConnectorError),
        (1317, True, QueryCancelledError),
        (1146, False, TableNotFoundError),
        (1064, False, TerminalConnectorError),
        (1045, False, TerminalConnectorError),
        (1142, False, TerminalConnectorError),
    ],
)
def test_mysql_errors_are_classified_by_number(
    code: int, cancelled: bool, expected: type[ConnectorError]
) -> None:
    exc = pymysql.err.OperationalError(code, "message")
    mapped = mysql_errors.translate(exc, cancelled=cancelled)
    assert type(mapped) is expected
    assert mapped is not None
    assert mapped.code == str(code)


def test_bad_content_is_refused_before_any_io() -> None:
    from openfdi.connectors.mysql.connector import MysqlConnector
    from openfdi.connectors.postgres.connector import PostgresConnector

    with pytest.raises(InvalidContentError, match="host"):
        PostgresConnector({"port": 5432, "database_name": "d", "user_name": "u"})
    with pytest.raises(InvalidContentError, match="port"):
        MysqlConnector({"host": "h", "port": "http", "database_name": "d", "user_name": "u"})
    with pytest.raises(InvalidContentError, match="database_name"):
        sqlite_connector.SqliteConnector({})


@pytest.mark.needs("read")
def test_a_missing_table_and_bad_sql_are_terminal(harness: Any) -> None:
    harness.execute("CREATE TABLE t (id INT)")
    conn = harness.connector()
    with pytest.raises(TableNotFoundError):
        list(conn.read(ReadPlan("missing")))
    with pytest.raises(TerminalConnectorError) as caught:
        list(conn.read(ReadPlan("t", where="id >>> ) 1")))
    assert not caught.value.retryable
    conn.check()  # the connector is still usable after a failed statement


SERVERS = [
    pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql"),
    pytest.param("mysql", marks=pytest.mark.mysql, id="mysql"),
]


@pytest.mark.parametrize("server", SERVERS)
def test_connection_refused_is_transient(server: str, make_harness: Any) -> None:
    conn = make_harness(server).connector(host="127.0.0.1", port="1")
    with pytest.raises(TransientConnectorError) as caught:
        conn.check()
    assert caught.value.retryable


@pytest.mark.parametrize("server", SERVERS)
def test_secrets_never_reach_the_message(server: str, make_harness: Any) -> None:
    # The server echoes the unknown database name, which here is also the password.
    harness = make_harness(server)
    user = harness.content["user_name"]
    if server == "mysql":  # a user whose password is SECRET (PostgreSQL here trusts anyone)
        user = harness.content["database_name"]
        harness.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{SECRET}'")
        harness.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{SECRET}'")
        harness.cleanups.append(f"DROP USER '{user}'@'%', '{user}'@'localhost'")
    conn = harness.connector(database_name=SECRET, password=SECRET, user_name=user)
    with pytest.raises(TerminalConnectorError) as caught:
        conn.check()
    assert SECRET not in str(caught.value)
    assert "******" in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_locked_sqlite_database_is_transient(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_connector, "BUSY_TIMEOUT_SECONDS", 0.05)
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (id INT)")
    holder.execute("BEGIN EXCLUSIVE")
    conn = sqlite_connector.SqliteConnector({"database_name": str(path)})
    try:
        with pytest.raises(TransientConnectorError, match="locked"):
            conn.describe("t")
    finally:
        conn.close()
        holder.close()


def test_a_missing_sqlite_file_is_not_created_by_reading(tmp_path: Any) -> None:
    path = tmp_path / "absent.db"
    conn = sqlite_connector.SqliteConnector({"database_name": str(path)})
    conn.check()  # a target may create it later
    with pytest.raises(TerminalConnectorError, match="does not exist"):
        conn.list_tables()
    assert not path.exists()
