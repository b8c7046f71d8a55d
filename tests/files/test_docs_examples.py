"""docs/files.md's examples, run as written: each task detail is taken from the page's JSON
blocks verbatim (only the data sources are the test's own: a folder under its FILE root, an SFTP
server on loopback, a fresh PostgreSQL schema). If the page changes, this test runs the new text."""

from __future__ import annotations

import json
import os
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from tests.engine.conftest import create_task
from tests.files.servers import Server
from tests.files.test_file_tasks import _datasource, _pg, _run, _sql

PAGE = Path(__file__).resolve().parents[2] / "docs" / "files.md"


def _examples() -> list[dict[str, Any]]:
    """The task details of the page's Examples section, in order."""
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## Examples", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "docs/files.md's Examples should hold two task details"
    return [json.loads(block) for block in blocks]


def test_a_partners_csv_files_go_into_postgres_each_once(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str,
    files_root: Path,
) -> None:  # fmt: skip
    detail = _examples()[0]
    _sql(f'CREATE TABLE "{pg_schema}".orders (id bigint PRIMARY KEY, amount numeric(12,2))')
    folder = files_root / "partner drop"  # a space in the path, as partners' folders have
    folder.mkdir()
    old = time.time() - 120
    (folder / "orders_1.csv").write_text("id,amount\n1,10.50\n2,20.00\n")
    (folder / "refunds_1.csv").write_text("id,amount\n9,-1\n")  # not the pattern: never read
    for name in ("orders_1.csv", "refunds_1.csv"):
        os.utime(folder / name, (old, old))
    files = _datasource(signed, base_path, "FILE", {"address": str(folder)})
    task = create_task(sdk, creds, files, _pg(signed, base_path, pg_schema), detail)
    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 2), log.remarks

    (folder / "orders_2.csv").write_text("id,amount\n2,21.00\n3,30.25\n")  # 2 is upserted
    os.utime(folder / "orders_2.csv", (old + 1, old + 1))
    log = _run(sdk, creds, task, runs=2)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 2), log.remarks
    log = _run(sdk, creds, task, runs=3)  # nothing new
    assert (log.execute_status, log.data_count) == ("SUCCESS", 0), log.remarks
    assert _sql(f'SELECT id, amount FROM "{pg_schema}".orders ORDER BY id') == [
        (1, Decimal("10.50")), (2, Decimal("21.00")), (3, Decimal("30.25"))
    ]  # fmt: skip


def test_a_tables_parquet_export_lands_on_an_sftp_server(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str, sftp: Server,
) -> None:  # fmt: skip
    detail = _examples()[1]
    _sql(f'CREATE TABLE "{pg_schema}".orders (id bigint PRIMARY KEY, amount numeric(12,2))')
    _sql(f'INSERT INTO "{pg_schema}".orders SELECT g, g / 4.0 FROM generate_series(1, 2500) g')
    remote = _datasource(signed, base_path, "FTP", sftp.content)
    task = create_task(sdk, creds, _pg(signed, base_path, pg_schema), remote, detail)
    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 2500), log.remarks
    written = sorted(sftp.root.rglob("*.parquet"))
    assert len(written) == 1, written  # 2,500 rows: under max_rows, one file
    table = pq.read_table(written[0])
    assert str(table.schema.field("amount").type) == "decimal128(12, 2)"  # the source's type
    rows = sorted(
        zip(table.column("id").to_pylist(), table.column("amount").to_pylist(), strict=True)
    )
    assert rows == [(g, Decimal(g) / 4) for g in range(1, 2501)]
