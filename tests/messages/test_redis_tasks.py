"""Redis ends through the SDK: a stream into PostgreSQL exactly once with exact values (a poison
entry one dirty row, a crashed reader's backlog written once), PostgreSQL into hashes and into a
stream, a REALTIME run idle on its stream stopping CANCELLED within the deadline, and
test-connect with the server's reason."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    Content,
    CreateDatasourceInfoRequest,
    DatasourceInfo,
    ListDatasourceTablesRequest,
    OperateTasksBean,
    StartTestDatasourceRequest,
    TaskBean,
)

from openfdi.connectors.registry import Registry
from openfdi.connectors.spi import ReadPlan
from tests.engine.conftest import create_task, wait_for
from tests.factories import unique
from tests.messages.conftest import REDIS
from tests.messages.redis_support import admin, pending, redis_ns
from tests.messages.test_message_tasks import _datasource, _finished, _has, _pg, _rows, _run
from tests.services import PG_ADMIN_URL

__all__ = ["redis_ns"]  # a fixture

BIG = 9223372036854775807
FIELDS = [
    {"name": "id", "path": "$.order.id", "type": "bigint"},
    {"name": "name", "path": "$.name", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
    {"name": "note", "path": "$.note", "type": "text"},
    {"name": "city", "path": "$.customer.address.city", "type": "text"},
    {"name": "first_tag", "path": "$.tags[0]", "type": "text"},
]


def _doc(i: int) -> bytes:
    return json.dumps(
        {
            "order": {"id": i},
            "name": f"ü🎉中{i}",
            "amount": f"{i}.10",
            "note": None,
            "customer": {"address": {"city": "Zürich"}},
            "tags": ["ß", "x"],
        },
        ensure_ascii=False,
    ).encode()


def _add(stream: str, payloads: list[bytes]) -> None:
    pipe = admin().pipeline(transaction=False)
    for payload in payloads:
        pipe.xadd(stream, {"payload": payload})
    pipe.execute()


def _source_detail(stream: str, table: str) -> dict[str, Any]:
    return {
        "sourceSelectedDatasource": {"table": stream, "message": {"fields": FIELDS}},
        "targetSelectedDatasource": {"table": table, "writeMode": "upsert", "keyColumns": ["id"]},
    }


def test_stream_to_postgres_exactly_once_with_exact_values_and_a_dirty_poison_row(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, redis_ns: str
) -> None:
    _add(redis_ns, [_doc(BIG), b"\xff not json", *[_doc(i) for i in range(1, 101)]])
    source = _datasource(signed, base_path, "REDIS", REDIS)
    detail = _source_detail(redis_ns, "orders")
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 101, 1)
    rows = _rows(pg_schema, "orders")
    assert len(rows) == 101
    assert rows[-1] == (BIG, f"ü🎉中{BIG}", Decimal(f"{BIG}.10"), None, "Zürich", "ß")
    assert rows[0] == (1, "ü🎉中1", Decimal("1.10"), None, "Zürich", "ß")
    assert pending(redis_ns) == 0  # every entry acknowledged, the poison one too

    # The same messages again (a producer's resend): still each once in the upsert target.
    _add(redis_ns, [_doc(i) for i in range(1, 51)])
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task, runs=2), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 50)
    assert len(_rows(pg_schema, "orders")) == 101


def test_a_crashed_readers_backlog_is_written_once(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, redis_ns: str
) -> None:
    _add(redis_ns, [_doc(i) for i in range(1, 301)])
    # A reader of the task's group takes 120 entries and dies before acknowledging them.
    with Registry.discover().open("REDIS", REDIS) as crashed:
        crashed.configure({"fields": FIELDS})
        first = next(crashed.read(ReadPlan(redis_ns, batch_rows=120)))
    assert len(first) == 120
    assert pending(redis_ns) == 120
    source = _datasource(signed, base_path, "REDIS", REDIS)
    detail = _source_detail(redis_ns, "orders")
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 300)
    assert [r[0] for r in _rows(pg_schema, "orders")] == list(range(1, 301))
    assert pending(redis_ns) == 0


@pytest.fixture
def pg_source(pg_schema: str) -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".src (id bigint primary key, name text, amount numeric, '
            "note text)"
        )
        conn.execute(
            f"INSERT INTO \"{pg_schema}\".src SELECT g, 'ü' || g, g + 0.25, "
            "CASE WHEN g % 2 = 0 THEN 'even' END FROM generate_series(1, 500) g"
        )
        conn.execute(f"INSERT INTO \"{pg_schema}\".src VALUES ({BIG}, '🎉', 0.1, NULL)")
    return pg_schema


def test_postgres_to_hashes_one_per_key(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_source: str, redis_ns: str
) -> None:
    detail = {
        "sourceSelectedDatasource": {"table": "src"},
        "targetSelectedDatasource": {"table": redis_ns, "writeMode": "upsert",
                                     "keyColumns": ["id"]},
    }  # fmt: skip
    target = _datasource(signed, base_path, "REDIS", REDIS)
    task = create_task(sdk, creds, _pg(signed, base_path, pg_source), target, detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 501)
    client = admin()
    assert len(list(client.scan_iter(match=f"{redis_ns}:*", count=1000))) == 501
    assert client.hgetall(f"{redis_ns}:2") == {
        b"id": b"2", b"name": "ü2".encode(), b"amount": b"2.25", b"note": b"even"
    }  # fmt: skip
    assert client.hgetall(f"{redis_ns}:{BIG}") == {
        b"id": str(BIG).encode(), b"name": "🎉".encode(), b"amount": b"0.1"
    }  # fmt: skip
    # Run again: the same 501 hashes, not more.
    _run(sdk, creds, task)
    wait_for(lambda: _finished(sdk, creds, task, runs=2), timeout=60)
    assert len(list(client.scan_iter(match=f"{redis_ns}:*", count=1000))) == 501


def test_postgres_to_a_stream_appends_every_row_once(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_source: str, redis_ns: str
) -> None:
    detail = {
        "sourceSelectedDatasource": {"table": "src"},
        "targetSelectedDatasource": {"table": redis_ns, "message": {"maxlen": 100000}},
    }
    target = _datasource(signed, base_path, "REDIS", REDIS)
    task = create_task(sdk, creds, _pg(signed, base_path, pg_source), target, detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 501)
    got = sorted(
        (json.loads(f[b"payload"]) for _id, f in admin().xrange(redis_ns)), key=lambda d: d["id"]
    )
    assert len(got) == 501
    assert got[0] == {"id": 1, "name": "ü1", "amount": "1.25", "note": None}
    assert got[-1] == {"id": BIG, "name": "🎉", "amount": "0.1", "note": None}


def test_a_realtime_run_idle_on_its_stream_stops_cancelled_within_the_deadline(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, redis_ns: str
) -> None:
    _add(redis_ns, [_doc(i) for i in range(1, 11)])
    source = _datasource(signed, base_path, "REDIS", REDIS)
    detail = _source_detail(redis_ns, "live")
    target = _pg(signed, base_path, pg_schema)
    task = create_task(sdk, creds, source, target, detail, "REALTIME")

    def batch(action: str) -> None:
        sdk.batch_start_or_stop_tasks(
            BatchStartOrStopTasksRequest(
                instance_id=creds.instance_id,
                body=OperateTasksBean(action_id=action, list=[TaskBean(task_id=task)]),
            )
        )

    batch("start")
    wait_for(lambda: _has(pg_schema, "live") and len(_rows(pg_schema, "live")) == 10, timeout=30)
    _add(redis_ns, [_doc(i) for i in range(11, 21)])
    wait_for(lambda: len(_rows(pg_schema, "live")) == 20, timeout=30)
    time.sleep(0.5)  # idle: the source blocks waiting for entries
    started = time.monotonic()
    batch("stop")
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=5)
    assert time.monotonic() - started < 2.5
    assert (log.execute_status, log.data_count) == ("CANCELLED", 20)
    assert pending(redis_ns) == 0


@pytest.fixture
def acl_user() -> Iterator[tuple[str, str]]:
    name, password = f"openfdi_t_{uuid.uuid4().hex[:8]}", "right-pass-7"
    client = admin()
    client.acl_setuser(
        name, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    yield name, password
    client.acl_deluser(name)


def test_test_connect_says_the_servers_reason_and_tables_lists_streams(
    sdk: Any, creds: Any, redis_ns: str, acl_user: tuple[str, str]
) -> None:
    name, password = acl_user
    _add(f"{redis_ns}:orders", [b"{}"])

    def settings(**changes: str) -> DatasourceInfo:
        content = {**REDIS, "user_name": name, "password": password, **changes}
        return DatasourceInfo(
            datasource_name=unique("rd"), datasource_type="REDIS", content=Content(**content)
        )

    good = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=settings())
    ).datasource_id
    test = StartTestDatasourceRequest(instance_id=creds.instance_id, datasource_id=good)
    assert sdk.start_test_datasource(test).result
    for changes, reason in (
        ({"password": "Wrong-pw-123"}, "invalid username-password pair"),
        ({"port": "1"}, "Connection refused"),
    ):
        test = StartTestDatasourceRequest(
            instance_id=creds.instance_id, datasource_id=good, body=settings(**changes)
        )
        with pytest.raises(exceptions.ClientRequestException) as caught:
            sdk.start_test_datasource(test)
        assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3016")
        assert reason in caught.value.error_msg
        assert "Wrong-pw-123" not in caught.value.error_msg
        assert password not in caught.value.error_msg
    tables = sdk.list_datasource_tables(
        ListDatasourceTablesRequest(
            instance_id=creds.instance_id, datasource_id=good, filter=redis_ns
        )
    )
    assert tables.tables == [f"{redis_ns}:orders"]


def test_an_invalid_redis_key_is_refused_at_create_naming_it(
    signed: Any, base_path: str, pg_schema: str, redis_ns: str
) -> None:
    source = _datasource(signed, base_path, "REDIS", REDIS)
    detail = {
        "sourceSelectedDatasource": {"table": redis_ns, "message": {"mode": "list"}},
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
    assert "message.mode" in reply.json()["error_msg"]


def test_a_redis_database_that_is_no_number_is_refused_at_create(
    signed: Any, base_path: str
) -> None:
    body = {"datasource_name": unique("rd"), "datasource_type": "REDIS",
            "content": {**REDIS, "redis_database": "first"}}  # fmt: skip
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 400, reply.text
    assert "content.redis_database" in reply.json()["error_msg"]


def test_keys_named_by_a_pattern_to_postgres(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, redis_ns: str
) -> None:
    client = admin()
    for i in range(1, 201):
        client.hset(f"{redis_ns}:user:{i}", mapping={"id": str(i), "name": f"ü{i}"})
    client.set(f"{redis_ns}:user:{BIG}", json.dumps({"id": BIG, "name": None}))
    client.rpush(f"{redis_ns}:user:list", "not a row")
    fields = [
        {"name": "id", "path": "$.id", "type": "bigint"},
        {"name": "name", "path": "$.name", "type": "text"},
        {"name": "redis_key", "meta": "key", "type": "text"},
    ]
    detail = {
        "sourceSelectedDatasource": {
            "table": "users",
            "message": {"mode": "keys", "key": f"{redis_ns}:user:*", "fields": fields},
        },
        "targetSelectedDatasource": {"table": "users", "writeMode": "upsert", "keyColumns": ["id"]},
    }
    source = _datasource(signed, base_path, "REDIS", REDIS)
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 201, 1)
    rows = _rows(pg_schema, "users")
    assert len(rows) == 201
    assert rows[0] == (1, "ü1", f"{redis_ns}:user:1")
    assert rows[-1] == (BIG, None, f"{redis_ns}:user:{BIG}")


def test_a_stream_key_with_colons_is_named_by_message_key(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, redis_ns: str
) -> None:
    stream = f"{redis_ns}:orders:v1"
    _add(stream, [_doc(i) for i in range(1, 21)])
    detail = _source_detail("orders", "orders")
    detail["sourceSelectedDatasource"]["message"]["key"] = stream
    source = _datasource(signed, base_path, "REDIS", REDIS)
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 20)
    assert pending(stream) == 0
