"""A composite task's initial copy of a PostgreSQL table (connectors/cdc/pg_apply.py
`copy_table`): binary COPY where both sides have the same built-in column types, text (cast by
the target) otherwise; either way the target ends equal to the source, value by value.

It needs no logical decoding, so it uses the machine's PostgreSQL (a fresh database each)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from openfdi.connectors.cdc import pg_apply
from openfdi.connectors.cdc.pg_apply import PgApplier
from openfdi.domain.cdc import TableName
from tests.services import require

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
TYPED = (
    "id bigint PRIMARY KEY, n numeric(30,10), ts timestamptz, j jsonb, bin bytea, t text, "
    "f double precision, arr int[], d date, iv interval, u uuid"
)
ROWS = (
    "INSERT INTO src.t VALUES "
    "(1, 12345678901234567890.0123456789, '2024-02-29 23:59:59.999999+05:30', "
    """'{"a": [1, "é", null]}', '\\x00ff00', E'tab\\there\\nnew "q" ''s'' \\\\', 'NaN', """
    "'{1,NULL,3}', '0001-01-01', '1 year -2 days 00:00:01.5', "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),"
    "(2, NULL, 'infinity', 'null', '', '', '-infinity', '{}', 'infinity', NULL, NULL),"
    "(3, -0.0000000001, '-infinity', '[]', NULL, NULL, 1e308, NULL, NULL, '0', NULL)"
)


@pytest.fixture
def database() -> Iterator[dict[str, Any]]:
    require("postgres")
    name = f"snapcopy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"host": "127.0.0.1", "port": 5432, "database_name": name, "user_name": "postgres"}
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _connect(content: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1", dbname=content["database_name"], user="postgres", autocommit=True
    )


def _copy(content: dict[str, Any], target: str, columns: tuple[str, ...]) -> int:
    applier = PgApplier(content, "task-1")
    try:
        with _connect(content) as source:
            source.autocommit = False
            source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            copied = applier.copy_table(
                source, TableName("src", "t"), TableName("dst", target), columns
            )
        applier.commit()
    finally:
        applier.close()
    return copied


def _rows(conn: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    """Each row as the server's text of every value: exact, whatever the column types."""
    return conn.execute(f"SELECT t::text FROM {table} t ORDER BY id").fetchall()


def test_same_builtin_types_copy_in_binary_and_exactly(
    database: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with _connect(database) as conn:
        conn.execute(f"CREATE SCHEMA src; CREATE SCHEMA dst; CREATE TABLE src.t ({TYPED})")
        conn.execute(f"CREATE TABLE dst.same ({TYPED})")
        conn.execute(ROWS)
        conn.execute("INSERT INTO dst.same (id) VALUES (99)")  # replaced by the copy
    forms: list[bool] = []
    real = pg_apply._builtin

    def noted(types: list[tuple[int, int]] | None) -> bool:
        forms.append(real(types))
        return forms[-1]

    monkeypatch.setattr(pg_apply, "_builtin", noted)
    columns = ("id", "n", "ts", "j", "bin", "t", "f", "arr", "d", "iv", "u")
    assert _copy(database, "same", columns) == 3
    assert forms == [True]
    with _connect(database) as conn:
        assert _rows(conn, "dst.same") == _rows(conn, "src.t")


def test_other_or_user_types_copy_as_text_cast_by_the_target(database: dict[str, Any]) -> None:
    with _connect(database) as conn:
        conn.execute("CREATE SCHEMA src; CREATE SCHEMA dst; CREATE TYPE mood AS ENUM ('ok', 'x')")
        conn.execute("CREATE TABLE src.t (id int PRIMARY KEY, v numeric(12,2), m mood)")
        conn.execute("CREATE TABLE dst.wider (id bigint PRIMARY KEY, v numeric, m mood)")
        conn.execute("CREATE TABLE dst.enum (id int PRIMARY KEY, v numeric(12,2), m mood)")
        conn.execute("INSERT INTO src.t SELECT g, g / 7.0, 'ok' FROM generate_series(1, 3000) g")
        conn.execute("INSERT INTO src.t VALUES (0, NULL, NULL)")
    assert _copy(database, "wider", ("id", "v", "m")) == 3001  # int -> bigint: text
    assert _copy(database, "enum", ("id", "v", "m")) == 3001  # a user type: text
    with _connect(database) as conn:
        source = _rows(conn, "src.t")
        assert _rows(conn, "dst.wider") == source
        assert _rows(conn, "dst.enum") == source


def test_a_table_of_more_than_one_chunk_arrives_whole(database: dict[str, Any]) -> None:
    with _connect(database) as conn:
        conn.execute("CREATE SCHEMA src; CREATE SCHEMA dst")
        conn.execute("CREATE TABLE src.t (id int PRIMARY KEY, pad text)")
        conn.execute("CREATE TABLE dst.t (id int PRIMARY KEY, pad text)")
        conn.execute("INSERT INTO src.t SELECT g, repeat('x', 500) FROM generate_series(1, 1e4) g")
    assert _copy(database, "t", ("id", "pad")) == 10_000  # about 5 MB: several 1 MB chunks
    with _connect(database) as conn:
        assert conn.execute("SELECT count(*), sum(id) FROM dst.t").fetchone() == (10_000, 50005000)
