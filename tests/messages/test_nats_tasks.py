"""NATS JetStream ends through the SDK, on the real server: a stream into PostgreSQL and
PostgreSQL into a stream, exactly once into an upsert target with exact values; a poison message
is one dirty row; messages a crashed run never acknowledged come back at the next run; a
REALTIME run idle on its stream stops CANCELLED within the deadline; test-connect and tables."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import psycopg
from huaweicloudsdkroma.v2 import BatchStartOrStopTasksRequest, OperateTasksBean, TaskBean

from tests.engine.conftest import create_task, wait_for
from tests.factories import unique
from tests.messages.nats_support import (
    NATS,
    consumer_info,
    fetch_without_ack,
    make_stream,
    publish,
    stream_messages,
)
from tests.messages.test_message_tasks import _datasource, _finished, _has, _pg, _rows, _run
from tests.services import PG_ADMIN_URL

BIG = 9223372036854775807
FIELDS = [
    {"name": "id", "path": "$.order.id", "type": "bigint"},
    {"name": "name", "path": "$.name", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
    {"name": "note", "path": "$.note", "type": "text"},
    {"name": "sku", "path": "$.order.items[0].sku", "type": "varchar"},
    {"name": "subj", "meta": "subject", "type": "varchar"},
]


def _doc(i: int) -> bytes:
    return json.dumps(
        {
            "order": {"id": i, "items": [{"sku": f"sku-ü-{i}"}, {"sku": "second"}]},
            "name": f"ü🎉{i}",
            "amount": f"{i}.10",
            "note": None,
        },
        ensure_ascii=False,
    ).encode()


def _source_detail(stream: str, table: str, **message: Any) -> dict[str, Any]:
    return {
        "sourceSelectedDatasource": {"table": stream, "message": {"fields": FIELDS, **message}},
        "targetSelectedDatasource": {"table": table, "writeMode": "upsert", "keyColumns": ["id"]},
    }


def test_stream_to_postgres_exactly_once_with_exact_values_and_a_dirty_poison_row(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, nats_stream: str
) -> None:
    make_stream(nats_stream, [f"{nats_stream}.>"])
    subject = f"{nats_stream}.orders"
    publish(subject, [_doc(BIG), b"\xff not json", *[_doc(i) for i in range(1, 101)]])
    source = _datasource(signed, base_path, "NATS", NATS)
    detail = _source_detail(nats_stream, "orders")
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 101, 1)
    rows = _rows(pg_schema, "orders")
    assert len(rows) == 101
    assert rows[-1] == (BIG, f"ü🎉{BIG}", Decimal(f"{BIG}.10"), None, f"sku-ü-{BIG}", subject)
    assert rows[0] == (1, "ü🎉1", Decimal("1.10"), None, "sku-ü-1", subject)
    info = consumer_info(nats_stream, f"openfdi-{nats_stream}")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)  # every message acknowledged

    # The same messages again (a redelivery): still each once in the upsert target.
    publish(subject, [_doc(i) for i in range(1, 51)])
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task, runs=2), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 50)
    assert len(_rows(pg_schema, "orders")) == 101


def test_messages_a_crashed_run_never_acknowledged_come_back_at_the_next_run(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, nats_stream: str
) -> None:
    make_stream(nats_stream)
    publish(nats_stream, [_doc(i) for i in range(1, 21)])
    durable = f"openfdi-{nats_stream}"
    # A run read them through the task's durable consumer, then died before its commit.
    assert len(fetch_without_ack(nats_stream, durable, 20, ack_wait=1)) == 20
    assert consumer_info(nats_stream, durable).num_ack_pending == 20
    source = _datasource(signed, base_path, "NATS", NATS)
    detail = _source_detail(nats_stream, "orders", ack_wait=1)
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    time.sleep(1.2)  # past ack_wait: the server offers them again
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 20)
    assert [r[0] for r in _rows(pg_schema, "orders")] == list(range(1, 21))
    info = consumer_info(nats_stream, durable)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


def test_postgres_to_stream_publishes_every_row_once(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, nats_stream: str
) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".src (id bigint primary key, name text, amount numeric,'
            " note text)"
        )
        conn.execute(
            f"INSERT INTO \"{pg_schema}\".src SELECT g, 'ü' || g, g + 0.25, NULL "
            "FROM generate_series(1, 500) g"
        )
        conn.execute(f"INSERT INTO \"{pg_schema}\".src VALUES ({BIG}, '🎉', 0.1, 'n')")
    detail = {
        "sourceSelectedDatasource": {"table": "src"},
        "targetSelectedDatasource": {
            "table": nats_stream,
            "message": {"create": True, "subject": f"{nats_stream}.rows"},
        },
    }
    target = _datasource(signed, base_path, "NATS", NATS)
    task = create_task(sdk, creds, _pg(signed, base_path, pg_schema), target, detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 501)
    got = sorted((json.loads(b) for b in stream_messages(nats_stream)), key=lambda d: d["id"])
    assert len(got) == 501
    assert got[0] == {"id": 1, "name": "ü1", "amount": "1.25", "note": None}
    assert got[-1] == {"id": BIG, "name": "🎉", "amount": "0.1", "note": "n"}


def test_a_realtime_run_idle_on_its_stream_stops_cancelled_within_the_deadline(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, nats_stream: str
) -> None:
    make_stream(nats_stream)
    publish(nats_stream, [_doc(i) for i in range(1, 11)])
    source = _datasource(signed, base_path, "NATS", NATS)
    detail = _source_detail(nats_stream, "live")
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail, "REALTIME")

    def batch(action: str) -> None:
        sdk.batch_start_or_stop_tasks(
            BatchStartOrStopTasksRequest(
                instance_id=creds.instance_id,
                body=OperateTasksBean(action_id=action, list=[TaskBean(task_id=task)]),
            )
        )

    batch("start")
    wait_for(lambda: _has(pg_schema, "live") and len(_rows(pg_schema, "live")) == 10)
    publish(nats_stream, [_doc(i) for i in range(11, 21)])
    wait_for(lambda: len(_rows(pg_schema, "live")) == 20, timeout=30)
    time.sleep(0.5)  # idle: the source waits for messages
    started = time.monotonic()
    batch("stop")
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=5)
    assert time.monotonic() - started < 2.5
    assert (log.execute_status, log.data_count) == ("CANCELLED", 20)
    assert consumer_info(nats_stream, f"openfdi-{nats_stream}").num_ack_pending == 0


def test_an_invalid_nats_key_is_refused_at_create_naming_it(
    signed: Any, base_path: str, pg_schema: str, nats_stream: str
) -> None:
    source = _datasource(signed, base_path, "NATS", NATS)
    detail = {
        "sourceSelectedDatasource": {"table": nats_stream, "message": {"durable": "a.b"}},
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
    assert "message.durable" in reply.json()["error_msg"]


def test_test_connect_really_connects_and_tables_lists_streams(
    signed: Any, base_path: str, nats_stream: str
) -> None:
    make_stream(nats_stream)
    good = _datasource(signed, base_path, "NATS", NATS)
    url = f"{base_path}/datasources/{good}"
    assert signed.post(f"{url}/test-connect").status_code == 200
    tables = signed.get(f"{url}/tables")
    assert tables.status_code == 200, tables.text
    assert nats_stream in tables.json()["tables"]

    bad = _datasource(
        signed, base_path, "NATS", {**NATS, "port": "1", "user_name": "u", "password": "pw-s3cret"}
    )
    reply = signed.post(f"{base_path}/datasources/{bad}/test-connect")
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "FDI.3016"
    assert "ConnectionRefusedError" in reply.json()["error_msg"]
    assert "pw-s3cret" not in reply.text
