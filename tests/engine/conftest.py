"""The engine's tests run a server with the engine on, and make real source/target databases."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from huaweicloudsdkroma.v2 import (
    CreateCommonTaskRequest,
    CreateCommonTaskRequestBody,
    ListMonitorLogRequest,
    TaskBasicRequestBody,
)

from tests.factories import unique
from tests.services import PG_ADMIN_URL, require


@pytest.fixture
def engine_enabled() -> bool:
    return True


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; fail the test with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met in {timeout} s (last value {value!r})")
        time.sleep(interval)
        value = predicate()
    return value


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        path = tmp_path / f"{name}.db"
        sqlite3.connect(path).close()
        return path

    return make


@pytest.fixture
def pg_schema() -> Iterator[str]:
    require("postgres")
    schema = f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def mysql_database() -> Iterator[str]:
    require("mysql")
    name = f"openfdi_e_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    conn.close()
    yield name
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{name}`")
    conn.close()


def create_task(  # type: ignore[no-untyped-def]
    sdk, creds, source: str, target: str, detail: dict[str, Any], task_type: str = "TIMING"
) -> str:
    """A common task between these data sources, created with the SDK; returns its id."""
    reply = sdk.create_common_task(
        CreateCommonTaskRequest(
            instance_id=creds.instance_id,
            body=CreateCommonTaskRequestBody(
                task=TaskBasicRequestBody(
                    task_name=unique("task"),
                    task_type=task_type,
                    source_datasource_id=source,
                    target_datasource_id=target,
                ),
                task_detail=json.dumps(detail),
            ),
        )
    )
    return str(reply.task.task_id)


def monitor_logs(sdk, creds, task_id: str) -> list[Any]:  # type: ignore[no-untyped-def]
    """The task's runs, newest first, as the SDK lists them."""
    reply = sdk.list_monitor_log(
        ListMonitorLogRequest(instance_id=creds.instance_id, task_id=task_id)
    )
    return list(reply.entities)
