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
ROWS = [
    (i, f"customer {i} é", Decimal(f"{i}.{i % 100:02d}"), PLACED.replace(microsecond=i), i % 2 == 0)
    for i in range(1, 1001)
]


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
        cur.execute(
            "CREATE TABLE orders (id bigint primary key, customer varchar(40),"
            " amount decimal(12,2), placed datetime(6), paid boolean)"
        )
        cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", ROWS)
    conn.commit()
    conn.close()

    doc = (ROOT / "docs" / "copy-a-table.md").read_text()
    match = re.search(r"<!-- copy-sdk-example -->\s*```python\n(.*?)```", doc, re.S)
    assert match, "docs/copy-a-table.md has no SDK example block"
    env = {
        **os.environ,
        "OPENFDI_ENDPOINT": served.url,
        "SHOP_DATABASE": mysql_database,
        "WAREHOUSE_DATABASE": warehouse,
    }
    result = subprocess.run(
        [sys.executable, "-c", match.group(1)], env=env, capture_output=True, text=True, timeout=60
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
