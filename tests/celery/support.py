"""Helpers of the Celery executor's tests: tasks between PostgreSQL tables through the SDK and
the signed client, and the run rows as the metadata database holds them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from huaweicloudsdkroma.v2 import (
    CreateCommonTaskRequest,
    CreateCommonTaskRequestBody,
    RunTaskRequest,
    TaskBasicRequestBody,
)
from sqlalchemy import select

from openfdi.services.runtime import Runtime
from openfdi.store.tables import RunRow
from tests.celery.conftest import PG_CONTENT
from tests.factories import unique
from tests.services import PG_ADMIN_URL


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met in {timeout} s (last value {value!r})")
        time.sleep(interval)
        value = predicate()
    return value


def pg(schema: str) -> psycopg.Connection[Any]:
    return psycopg.connect(f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}", autocommit=True)


def fill(schema: str, rows: int, table: str = "src") -> None:
    with pg(schema) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, body text)")
        conn.execute(
            f"INSERT INTO {table} SELECT i, 'row ' || i FROM generate_series(1, %s) AS i"
            " ON CONFLICT DO NOTHING",
            (rows,),
        )


def slow_target(schema: str, table: str, seconds: float) -> None:
    """The target table, each statement writing to it taking `seconds` more (a trigger): a copy
    commits a slice (a few thousand rows) at a time, at a pace a test can act between."""
    with pg(schema) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, body text)")
        conn.execute(
            f"CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        )
        conn.execute(
            f"CREATE TRIGGER {table}_slow BEFORE INSERT ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_slow()"
        )


def rows_of(schema: str, table: str) -> list[tuple[Any, ...]]:
    with pg(schema) as conn:
        return [tuple(r) for r in conn.execute(f"SELECT id, body FROM {table} ORDER BY id")]


def datasource(signed: httpx.Client, base_path: str, schema: str) -> str:
    body = {"datasource_name": unique("pg"), "datasource_type": "POSTGRESQL",
            "content": {**PG_CONTENT, "schema": schema}}  # fmt: skip
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["datasource_id"])


def copy_task(  # type: ignore[no-untyped-def]
    sdk,
    creds,
    ds: str,
    target_table: str,
    *,
    row_sleep_s: float = 0.0,
    task_type: str = "TIMING",
    incremental: bool = False,
    parallelism: int = 1,
) -> str:
    """A task copying `src` into `target_table` (upsert on id), through the SDK; each source
    row costs `row_sleep_s` to read, so that a run lasts as long as a test needs."""
    source: dict[str, Any] = {"table": "src"}
    if row_sleep_s:
        source["where"] = f"pg_sleep({row_sleep_s}) IS NOT NULL"
    if incremental:
        source["incremental"] = {"column": "id"}
    detail = {
        "sourceSelectedDatasource": source,
        "targetSelectedDatasource": {
            "table": target_table, "writeMode": "upsert", "keyColumns": ["id"]},
    }  # fmt: skip
    if parallelism > 1:
        detail["parallelism"] = parallelism
    reply = sdk.create_common_task(
        CreateCommonTaskRequest(
            instance_id=creds.instance_id,
            body=CreateCommonTaskRequestBody(
                task=TaskBasicRequestBody(
                    task_name=unique("task"),
                    task_type=task_type,
                    source_datasource_id=ds,
                    target_datasource_id=ds,
                ),
                task_detail=json.dumps(detail),
            ),
        )
    )
    return str(reply.task.task_id)


def run(sdk, creds, task_id: str) -> None:  # type: ignore[no-untyped-def]
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task_id))


def run_rows(rt: Runtime, task_ids: list[str]) -> list[RunRow]:
    with rt.db.read() as session:
        rows = session.scalars(select(RunRow).where(RunRow.task_id.in_(task_ids))).all()
        session.expunge_all()
    return list(rows)


def ended(rt: Runtime, task_ids: list[str], count: int | None = None) -> list[RunRow] | None:
    """The tasks' runs once all have ended (and there are `count`, default one per task)."""
    rows = run_rows(rt, task_ids)
    want = len(task_ids) if count is None else count
    if len(rows) < want or any(r.state in ("starting", "running", "stopping") for r in rows):
        return None
    return rows


def owner_pid(owner: str | None) -> int:
    """The process id in a Celery worker's lease owner, `celery:run:<host>:<pid>:<hex>`
    (`celery:step:…` for a worker executing runs as steps)."""
    assert owner is not None
    assert owner.startswith(("celery:run:", "celery:step:")), owner
    assert owner != "celery:step:handoff", owner
    return int(owner.split(":")[3])
