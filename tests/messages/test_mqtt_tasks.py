"""MQTT ends through the SDK, on the real Mosquitto: a topic into PostgreSQL (exactly once into an
upsert target with exact values, what came while no run was connected delivered at the next run,
a poison message one dirty row) and PostgreSQL into a topic; a REALTIME run idle on its topic
stops CANCELLED within the deadline; test-connect says the broker's reason."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    OperateTasksBean,
    StartTestDatasourceRequest,
    TaskBean,
)

from openfdi.connectors.mqtt.connector import session_client_id
from tests.engine.conftest import create_task, wait_for
from tests.messages.mqtt_support import MQTT, Subscriber, publish
from tests.messages.test_message_tasks import _datasource, _finished, _has, _pg, _rows, _run
from tests.services import PG_ADMIN_URL

BIG = 9223372036854775807
FIELDS = [
    {"name": "id", "path": "$.order.id", "type": "bigint"},
    {"name": "name", "path": "$.name", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
    {"name": "note", "path": "$.note", "type": "text"},
    {"name": "city", "path": "$.customer.address.city", "type": "varchar"},
    {"name": "sku", "path": "$.items[1].sku", "type": "text"},
    {"name": "topic", "meta": "topic", "type": "text"},
]


def _doc(i: int, city: str = "Zürich") -> bytes:
    doc = {
        "order": {"id": i},
        "name": f"ü🎉{i}",
        "amount": f"{i}.10",
        "note": None,
        "customer": {"address": {"city": city}},
        "items": [{"sku": "a"}, {"sku": f"中{i}"}],
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def _row(i: int, topic: str, city: str = "Zürich") -> tuple[Any, ...]:
    return (i, f"ü🎉{i}", Decimal(f"{i}.10"), None, city, f"中{i}", topic)


def _detail(topic: str, table: str) -> dict[str, Any]:
    return {
        "sourceSelectedDatasource": {"table": "orders",
                                     "message": {"topic": topic, "fields": FIELDS}},
        "targetSelectedDatasource": {"table": table, "writeMode": "upsert",
                                     "keyColumns": ["id"]},
    }  # fmt: skip


def test_topic_to_postgres_exactly_once_across_offline_runs_with_a_dirty_poison_row(
    sdk: Any,
    creds: Any,
    signed: Any,
    base_path: str,
    pg_schema: str,
    mqtt_topic: str,
    mqtt_sessions: list[str],
) -> None:
    filter_ = f"{mqtt_topic}/#"
    source = _datasource(signed, base_path, "MQTT", MQTT)
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema),
                       _detail(filter_, "orders"))  # fmt: skip
    mqtt_sessions.append(session_client_id(task, filter_))
    # The first run makes the task's session on the broker; nothing was published yet.
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 0)

    # Published while no run is connected: the session keeps them for the next run.
    publish(f"{mqtt_topic}/eu", [_doc(BIG), b"\xff not json"])
    publish(f"{mqtt_topic}/asia", [_doc(i, "東京") for i in range(1, 301)])
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task, runs=2), timeout=60)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 301, 1)
    rows = _rows(pg_schema, "orders")
    assert len(rows) == 301
    assert rows[0] == _row(1, f"{mqtt_topic}/asia", "東京")
    assert rows[-1] == _row(BIG, f"{mqtt_topic}/eu")

    # The same orders again (a redelivery): still each once in the upsert target; nothing of
    # the earlier runs comes back (it was acknowledged).
    publish(f"{mqtt_topic}/asia", [_doc(i, "東京") for i in range(1, 51)])
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task, runs=3), timeout=60)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 50, 0)
    assert len(_rows(pg_schema, "orders")) == 301


def test_postgres_to_topic_every_row_received_once(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, mqtt_topic: str
) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".src (id bigint primary key, name text, amount numeric, '
            "note text)"
        )
        conn.execute(
            f"INSERT INTO \"{pg_schema}\".src SELECT g, 'ü' || g, g + 0.25, NULL "
            "FROM generate_series(1, 500) g"
        )
        conn.execute(f"INSERT INTO \"{pg_schema}\".src VALUES ({BIG}, '🎉', 0.1, 'n')")
    detail = {
        "sourceSelectedDatasource": {"table": "src"},
        "targetSelectedDatasource": {"table": "out", "message": {"topic": f"{mqtt_topic}/out"}},
    }
    target = _datasource(signed, base_path, "MQTT", MQTT)
    task = create_task(sdk, creds, _pg(signed, base_path, pg_schema), target, detail)
    sub = Subscriber(f"{mqtt_topic}/out")
    try:
        _run(sdk, creds, task)
        log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
        assert (log.execute_status, log.data_count) == ("SUCCESS", 501)
        got = sorted((json.loads(b) for b in sub.wait_for(501)), key=lambda d: d["id"])
    finally:
        sub.close()
    assert len(got) == 501
    assert got[0] == {"id": 1, "name": "ü1", "amount": "1.25", "note": None}
    assert got[-1] == {"id": BIG, "name": "🎉", "amount": "0.1", "note": "n"}


@pytest.mark.slow
def test_a_realtime_run_reads_on_and_stops_cancelled_within_the_deadline_while_idle(
    sdk: Any,
    creds: Any,
    signed: Any,
    base_path: str,
    pg_schema: str,
    mqtt_topic: str,
    mqtt_sessions: list[str],
) -> None:
    source = _datasource(signed, base_path, "MQTT", MQTT)
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema),
                       _detail(mqtt_topic, "live"), "REALTIME")  # fmt: skip
    mqtt_sessions.append(session_client_id(task, mqtt_topic))

    def batch(action: str) -> None:
        sdk.batch_start_or_stop_tasks(
            BatchStartOrStopTasksRequest(
                instance_id=creds.instance_id,
                body=OperateTasksBean(action_id=action, list=[TaskBean(task_id=task)]),
            )
        )

    def count() -> int:
        return len(_rows(pg_schema, "live")) if _has(pg_schema, "live") else 0

    batch("start")

    def subscribed() -> bool:
        # Until the run subscribed, a message has nowhere to go: send one until it arrives.
        publish(mqtt_topic, [_doc(0)])
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            if count() == 1:
                return True
            time.sleep(0.05)
        return False

    wait_for(subscribed, timeout=60, interval=0.2)
    publish(mqtt_topic, [b"poison", *[_doc(i) for i in range(1, 201)]])
    wait_for(lambda: count() == 201, timeout=30)
    publish(mqtt_topic, [_doc(i) for i in range(201, 251)])  # the stream goes on
    wait_for(lambda: count() == 251, timeout=30)
    time.sleep(0.5)  # idle: the source waits for messages
    started = time.monotonic()
    batch("stop")
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=5)
    assert time.monotonic() - started < 2.5
    assert (log.execute_status, log.dirty_data_count) == ("CANCELLED", 1)
    rows = _rows(pg_schema, "live")
    assert [r[0] for r in rows] == list(range(251))
    assert rows[250] == _row(250, mqtt_topic)


def test_test_connect_reaches_the_broker_and_says_its_reason(
    sdk: Any, creds: Any, signed: Any, base_path: str, private_broker: dict[str, Any]
) -> None:
    def check(content: dict[str, Any]) -> Any:
        datasource = _datasource(signed, base_path, "MQTT", content)
        return sdk.start_test_datasource(
            StartTestDatasourceRequest(instance_id=creds.instance_id, datasource_id=datasource)
        )

    assert check(private_broker).result
    for content, reason in (
        ({**private_broker, "password": "s3cret-wrong"}, "Not authorized"),
        ({**private_broker, "port": "1"}, "refused"),
        ({**private_broker, "host": "no-such-host.invalid"}, "cannot resolve"),
    ):
        with pytest.raises(exceptions.ClientRequestException) as caught:
            check(content)
        assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3016")
        assert reason in caught.value.error_msg
        assert "s3cret-wrong" not in caught.value.error_msg
