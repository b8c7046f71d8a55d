"""docs/copy-a-table.md's SDK example, verbatim, against `openfdi serve --demo` (a real process):
a MariaDB table arrives in PostgreSQL value for value."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pymysql
import pytest

from tests.e2e.process import Served
from tests.services import PG_ADMIN_URL, require

ROOT = Path(__file__).resolve().parents[2]
PLACED = dt.datetime(2026, 1, 2, 3, 4, 5)
# What the doc's setup SQL inserts.
ROWS = [
    (i, f"customer {i}", i * Decimal("1.25"), PLACED.replace(microsecond=i), i % 2 == 0)
    for i in range(1, 1001)
]


def _doc_block(marker: str, language: str) -> str:
    doc = (ROOT / "docs" / "copy-a-table.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)```", doc, re.S)
    assert match, f"docs/copy-a-table.md has no {marker} block"
    return match.group(1)


def _setup_statements() -> list[str]:
    """The doc's MariaDB setup without its first two statements (the test has its database)."""
    lines = [line for line in _doc_block("copy-mariadb-setup", "sql").splitlines()
             if not line.lstrip().startswith("--")]  # fmt: skip
    statements = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
    assert statements[:2] == ["CREATE DATABASE shop", "USE shop"], statements[:2]
    return statements[2:]


@pytest.fixture
def warehouse() -> Iterator[str]:
    """A fresh PostgreSQL database: the example writes to its default schema."""
    require("postgres")
    name = f"openfdi_w_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_the_copy_example_moves_a_mariadb_table_into_postgresql(
    served: Served, mysql_database: str, warehouse: str
) -> None:
    conn = pymysql.connect(host="127.0.0.1", user="root", database=mysql_database)
    with conn.cursor() as cur:
        for statement in _setup_statements():
            cur.execute(statement)
    conn.commit()
    conn.close()
    example = _doc_block("copy-sdk-example", "python")
    env = {
        **os.environ,
        "OPENFDI_ENDPOINT": served.url,
        "SHOP_DATABASE": mysql_database,
        "WAREHOUSE_DATABASE": warehouse,
    }
    result = subprocess.run(
        [sys.executable, "-c", example], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"SUCCESS: 1000 rows, 0 refused, [\d.]+ [KM]?B; \n", result.stdout), (
        result.stdout
    )

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{warehouse}") as pg:
        copied = pg.execute("SELECT * FROM orders_copy ORDER BY id").fetchall()
        key = pg.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = 'orders_copy'::regclass AND i.indisprimary"
        ).fetchall()
    assert [tuple(r) for r in copied] == ROWS
    assert key == [("id",)]
