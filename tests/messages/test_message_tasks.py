"""Message ends through the SDK, on the real brokers: a queue into PostgreSQL and PostgreSQL into
a queue, exactly once into an upsert target with exact values; a poison message is one dirty row;
a REALTIME run idle on its queue stops CANCELLED within the deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    OperateTasksBean,
    RunTaskRequest,
    TaskBean,
)

from tests.engine.conftest import create_task, monitor_logs, wait_for
from tests.factories import unique
from tests.messages.conftest import RABBIT, rabbit_drain, rabbit_publish
from tests.services import PG_ADMIN_URL

BIG = 9223372036854775807
FIELDS = [
    {"name": "id", "path": "$.order.id", "type": "bigint"},
    {"name": "name", "path": "$.name", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
    {"name": "note", "path": "$.note", "type": "text"},
]


def _doc(i: int) -> bytes:
    return json.dumps(
        {"order": {"id": i}, "name": f"ü🎉{i}", "amount": f"{i}.10", "note": None},
        ensure_ascii=False,
    ).encode()


def _datasource(signed: Any, base_path: str, kind: str, content: dict[str, Any]) -> str:
    body = {"datasource_name": unique("ds"), "datasource_type": kind, "content": content}
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["datasource_id"])


def _pg(signed: Any, base_path: str, schema: str) -> str:
    content = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
               "user_name": "postgres", "password": "unused", "schema": schema}  # fmt: skip
    return _datasource(signed, base_path, "POSTGRESQL", content)


def _rows(schema: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        return conn.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY 1').fetchall()


def _finished(sdk: Any, creds: Any, task: str, runs: int = 1) -> Any:
    logs = monitor_logs(sdk, creds, task)
    done = len(logs) >= runs and logs[0].execute_status != "RUNNING"
    return logs[0] if done else None


def _run(sdk: Any, creds: Any, task: str) -> None:
    sdk.run_task(RunTaskRequest(instance_id=creds.instance_id, task_id=task))


BrokerCase = tuple[str, dict[str, Any], Callable[[str, list[bytes]], None]]


@pytest.fixture
def rabbit(rabbit_queue: str) -> tuple[str, str, dict[str, Any]]:
    return rabbit_queue, "RABBITMQ", RABBIT


def test_queue_to_postgres_exactly_once_with_exact_values_and_a_dirty_poison_row(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, rabbit: Any
) -> None:
    queue, kind, content = rabbit
    rabbit_publish(queue, [_doc(BIG), b"\xff not json", *[_doc(i) for i in range(1, 101)]])
    detail = {
        "sourceSelectedDatasource": {"table": queue, "message": {"fields": FIELDS}},
        "targetSelectedDatasource": {"table": "orders", "writeMode": "upsert",
                                     "keyColumns": ["id"]},
    }  # fmt: skip
    source = _datasource(signed, base_path, kind, content)
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 101, 1)
    rows = _rows(pg_schema, "orders")
    assert len(rows) == 101
    assert rows[-1] == (BIG, f"ü🎉{BIG}", Decimal(f"{BIG}.10"), None)
    assert rows[0] == (1, "ü🎉1", Decimal("1.10"), None)

    # The same messages again (a redelivery): still each once in the upsert target.
    rabbit_publish(queue, [_doc(i) for i in range(1, 51)])
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task, runs=2), timeout=60)
    assert log.data_count == 50
    assert len(_rows(pg_schema, "orders")) == 101
    assert rabbit_drain(queue) == []


def test_postgres_to_queue_publishes_every_row_once(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, rabbit: Any
) -> None:
    queue, kind, content = rabbit
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".src (id bigint primary key, name text, amount numeric)'
        )
        conn.execute(
            f"INSERT INTO \"{pg_schema}\".src SELECT g, 'ü' || g, g + 0.25 "
            "FROM generate_series(1, 500) g"
        )
    detail = {
        "sourceSelectedDatasource": {"table": "src"},
        "targetSelectedDatasource": {"table": queue, "message": {"declare": True}},
    }
    target = _datasource(signed, base_path, kind, content)
    task = create_task(sdk, creds, _pg(signed, base_path, pg_schema), target, detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 500)
    got = sorted((json.loads(b) for b in rabbit_drain(queue)), key=lambda d: d["id"])
    assert len(got) == 500
    assert got[0] == {"id": 1, "name": "ü1", "amount": "1.25"}


def test_a_realtime_run_idle_on_its_queue_stops_cancelled_within_the_deadline(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, rabbit: Any
) -> None:
    queue, kind, content = rabbit
    rabbit_publish(queue, [_doc(i) for i in range(1, 11)])
    detail = {
        "sourceSelectedDatasource": {"table": queue, "message": {"fields": FIELDS}},
        "targetSelectedDatasource": {"table": "live", "writeMode": "upsert",
                                     "keyColumns": ["id"]},
    }  # fmt: skip
    source = _datasource(signed, base_path, kind, content)
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail, "REALTIME")

    def batch(action: str) -> None:
        sdk.batch_start_or_stop_tasks(
            BatchStartOrStopTasksRequest(
                instance_id=creds.instance_id,
                body=OperateTasksBean(action_id=action, list=[TaskBean(task_id=task)]),
            )
        )

    batch("start")
    wait_for(lambda: len(_rows(pg_schema, "live")) == 10 if _has(pg_schema, "live") else 0)
    rabbit_publish(queue, [_doc(i) for i in range(11, 21)])
    wait_for(lambda: len(_rows(pg_schema, "live")) == 20, timeout=30)
    time.sleep(0.5)  # idle: the source waits for messages
    started = time.monotonic()
    batch("stop")
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=5)
    assert time.monotonic() - started < 2.5
    assert (log.execute_status, log.data_count) == ("CANCELLED", 20)


def _has(schema: str, table: str) -> bool:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        ).fetchone()
    return found is not None


def test_an_invalid_message_key_is_refused_at_create_naming_it(
    signed: Any, base_path: str, pg_schema: str, rabbit: Any
) -> None:
    queue, kind, content = rabbit
    source = _datasource(signed, base_path, kind, content)
    detail = {
        "sourceSelectedDatasource": {
            "table": queue,
            "message": {"fields": [{"name": "id", "path": "order.id", "type": "bigint"}]},
        },
        "targetSelectedDatasource": {"table": "t"},
    }
    body = {
        "task": {"task_name": unique("task"), "task_type": "TIMING",
                 "source_datasource_id": source,
                 "target_datasource_id": _pg(signed, base_path, pg_schema)},
        "task_detail": json.dumps(detail),
    }  # fmt: skip
    reply = signed.post(f"{base_path}/tasks", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "FDI.3033"
    assert "message.fields[0].path" in reply.json()["error_msg"]
