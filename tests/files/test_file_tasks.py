"""FILE ends through the API and the official SDK, on real disk and the machine's PostgreSQL:
PostgreSQL -> CSV / Parquet / JSON lines -> PostgreSQL with every value exact (also through FTP,
FTPS and SFTP folders); a file dropped between runs is read once; a row that does not parse is
one dirty row; bad file options are refused at create with the key named."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from huaweicloudsdkroma.v2 import RunTaskRequest

from tests.engine.conftest import create_task, monitor_logs, wait_for
from tests.factories import unique
from tests.services import PG_ADMIN_URL

COLUMNS = (
    "id bigint primary key, amount numeric(14,4), at timestamptz, stamp timestamp, "
    "day date, ok boolean, note text, big bigint"
)
VALUES = """
 (1, 12345678.1234, '2026-03-04 05:06:07.891011+02', '2026-03-04 05:06:07.891011',
  '2026-03-04', true, E'quotes "q", commas, a\\nnew line and ü🎉', 9223372036854775807),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, -0.0001, '1970-01-01 00:00:00+00', '1969-12-31 23:59:59.999999', '0001-01-01', false,
  '', -9223372036854775808)
"""


def _datasource(signed: httpx.Client, base_path: str, kind: str, content: dict[str, Any]) -> str:
    body = {"datasource_name": unique("ds"), "datasource_type": kind, "content": content}
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["datasource_id"])


def _pg(signed: httpx.Client, base_path: str, schema: str) -> str:
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": schema}  # fmt: skip
    return _datasource(signed, base_path, "POSTGRESQL", content)


def _sql(statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def _run(sdk: Any, creds: Any, task: str, runs: int = 1) -> Any:
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))

    def finished() -> Any:
        logs = monitor_logs(sdk, creds, task)
        return logs[0] if len(logs) >= runs and logs[0].execute_status != "RUNNING" else None

    return wait_for(finished, timeout=60)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_postgres_to_files_and_back_keeps_every_value(
    fmt: str, sdk: Any, creds: Any, signed: httpx.Client, base_path: str,
    pg_schema: str, files_root: Path,
) -> None:  # fmt: skip
    _sql(f'CREATE TABLE "{pg_schema}".orders ({COLUMNS})')
    _sql(f'INSERT INTO "{pg_schema}".orders VALUES {VALUES}')
    folder = files_root / "exports"
    folder.mkdir()
    pg = _pg(signed, base_path, pg_schema)
    files = _datasource(signed, base_path, "FILE", {"address": str(folder)})

    out = {"sourceSelectedDatasource": {"table": "orders"},
           "targetSelectedDatasource": {"table": "orders", "message": {"format": fmt}}}  # fmt: skip
    log = _run(sdk, creds, create_task(sdk, creds, pg, files, out))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 3, 0)
    written = sorted(p.name for p in folder.iterdir())
    assert len(written) == 1, written  # one file per run, nothing hidden left behind
    assert written[0].endswith(f".{fmt}")

    back = {"sourceSelectedDatasource": {"table": "orders",
                                         "message": {"format": fmt, "min_age_seconds": 0}},
            "targetSelectedDatasource": {"table": "orders_back"}}  # fmt: skip
    log = _run(sdk, creds, create_task(sdk, creds, files, pg, back))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 3, 0), (
        log.remarks
    )
    original = _sql(f'SELECT * FROM "{pg_schema}".orders ORDER BY id')
    copied = _sql(f'SELECT * FROM "{pg_schema}".orders_back ORDER BY id')
    assert copied == original
    assert copied[0][1] == Decimal("12345678.1234")


def test_a_file_dropped_between_runs_is_read_once_and_a_bad_row_is_dirty(
    sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str,
    files_root: Path,
) -> None:  # fmt: skip
    folder = files_root / "inbox"
    folder.mkdir()
    old = time.time() - 60
    (folder / "orders_1.csv").write_text("id,amount\n1,1.50\n2,2.25\n")
    os.utime(folder / "orders_1.csv", (old, old))
    files = _datasource(signed, base_path, "FILE", {"address": str(folder)})
    fields = [{"name": "id", "type": "bigint"},
              {"name": "amount", "type": "decimal", "precision": 10, "scale": 2}]  # fmt: skip
    detail = {"sourceSelectedDatasource": {"table": "orders",
                                           "incremental": {"column": "_file_mtime"},
                                           "message": {"fields": fields}},
              "targetSelectedDatasource": {"table": "orders"}}  # fmt: skip
    task = create_task(sdk, creds, files, _pg(signed, base_path, pg_schema), detail)
    log = _run(sdk, creds, task)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 2), log.remarks

    (folder / "orders_2.csv").write_text("id,amount\n3,3.00\nnot a number,4\n5,5.5\n")
    os.utime(folder / "orders_2.csv", (old + 1, old + 1))
    log = _run(sdk, creds, task, runs=2)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 2, 1)
    log = _run(sdk, creds, task, runs=3)  # nothing new: nothing read again
    assert (log.execute_status, log.data_count) == ("SUCCESS", 0)
    rows = _sql(f'SELECT id, amount FROM "{pg_schema}".orders ORDER BY id')
    assert rows == [(1, Decimal("1.50")), (2, Decimal("2.25")), (3, Decimal("3.00")),
                    (5, Decimal("5.50"))]  # fmt: skip


@pytest.mark.parametrize(
    ("message", "key"),
    [
        ({"format": "xml"}, "message.format"),
        ({"delimiter": ";;"}, "message.delimiter"),
        ({"fields": [{"name": "a", "type": "money"}]}, "message.fields[0].type"),
        ({"name": "../{part}.csv"}, "message.name"),
        ({"colour": "red"}, "message.colour"),
    ],
)
def test_bad_file_options_are_refused_at_create_naming_the_key(
    message: dict[str, Any], key: str, signed: httpx.Client, base_path: str, files_root: Path,
    pg_schema: str,
) -> None:  # fmt: skip
    files = _datasource(signed, base_path, "FILE", {"address": str(files_root)})
    pg = _pg(signed, base_path, pg_schema)
    body = {
        "task": {"task_name": unique("t"), "task_type": "TIMING",
                 "source_datasource_id": files, "target_datasource_id": pg},
        "task_detail": json.dumps(
            {"sourceSelectedDatasource": {"table": "orders", "message": message},
             "targetSelectedDatasource": {"table": "orders"}}
        ),
    }  # fmt: skip
    reply = signed.post(f"{base_path}/tasks", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "FDI.3033"
    assert key in reply.json()["error_msg"]


@pytest.mark.parametrize("protocol", ["ftp", "ftps", "sftp"])
def test_postgres_to_a_server_folder_and_back_through_the_sdk(
    protocol: str, sdk: Any, creds: Any, signed: httpx.Client, base_path: str, pg_schema: str,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    server = request.getfixturevalue(protocol)
    _sql(f'CREATE TABLE "{pg_schema}".orders ({COLUMNS})')
    _sql(f'INSERT INTO "{pg_schema}".orders VALUES {VALUES}')
    pg = _pg(signed, base_path, pg_schema)
    remote = _datasource(signed, base_path, "FTP", server.content)
    assert signed.post(f"{base_path}/datasources/{remote}/test-connect").status_code == 200
    out = {"sourceSelectedDatasource": {"table": "orders"},
           "targetSelectedDatasource": {"table": "orders"}}  # fmt: skip
    log = _run(sdk, creds, create_task(sdk, creds, pg, remote, out))
    assert (log.execute_status, log.data_count) == ("SUCCESS", 3), log.remarks
    back = {"sourceSelectedDatasource": {"table": "orders", "message": {"min_age_seconds": 0}},
            "targetSelectedDatasource": {"table": "orders_back"}}  # fmt: skip
    log = _run(sdk, creds, create_task(sdk, creds, remote, pg, back))
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 3, 0), (
        log.remarks
    )
    original = _sql(f'SELECT * FROM "{pg_schema}".orders ORDER BY id')
    assert _sql(f'SELECT * FROM "{pg_schema}".orders_back ORDER BY id') == original
