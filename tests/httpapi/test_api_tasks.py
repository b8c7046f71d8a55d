"""API ends through the served openfdi and the official SDK: a paged API into PostgreSQL with
exact values, PostgreSQL into an API (every row received once, through a 429), incremental time
windows resumed after a stop without loss or duplicates, hostile answers failing only the run,
and invalid settings refused at create with FDI.3033."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    OperateTasksBean,
    StopTaskRequest,
    TaskBean,
)

from tests.engine.conftest import create_task, wait_for
from tests.httpapi import fake_api
from tests.httpapi.fake_api import FakeApi
from tests.httpapi.test_api_connector import PAGE, _records, amount
from tests.messages.test_message_tasks import _datasource, _finished, _pg, _rows, _run
from tests.services import PG_ADMIN_URL

BEARER = {"auth_method": "bearer", "token": fake_api.BEARER}


def _api(signed: Any, base_path: str, url: str, auth: dict[str, Any] | None = None) -> str:
    content: dict[str, Any] = {"url": url, "api_method": "GET"}
    if auth is not None:
        content["api_auth_detail"] = auth
    return _datasource(signed, base_path, "API", content)


def test_a_paged_api_into_postgres_with_exact_values_and_a_dirty_record(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, api: FakeApi
) -> None:
    api.state.auth = "bearer"
    api.state.records = [*_records(95), {"id": "not a number"}]
    detail = {
        "sourceSelectedDatasource": {"table": "orders", "message": PAGE},
        "targetSelectedDatasource": {"table": "orders", "writeMode": "upsert",
                                     "keyColumns": ["id"]},
    }  # fmt: skip
    source = _api(signed, base_path, f"{api.url}/orders", BEARER)
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 95, 1)
    rows = _rows(pg_schema, "orders")
    assert len(rows) == 95
    assert rows[0] == (1, "ü🎉1", amount(1), 0.1, "Zürich")
    assert rows[-1][2] == Decimal("12345678901234567985.123456789")


def test_postgres_into_an_api_every_row_received_once_through_a_429(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, api: FakeApi
) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{pg_schema}".src (id bigint primary key, name text, '
            "amount numeric(30,9), at timestamptz)"
        )
        conn.execute(
            f"INSERT INTO \"{pg_schema}\".src SELECT g, 'ü' || g, 12345678901234567890.123456789 "
            "+ g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' "
            "FROM generate_series(1, 1200) g"
        )
    api.state.faults = [(429, {"Retry-After": "1"})]
    detail = {
        "sourceSelectedDatasource": {"table": "src"},
        "targetSelectedDatasource": {"table": "orders",
                                     "message": {"root": "data", "rows_per_request": 500}},
    }  # fmt: skip
    target = _api(signed, base_path, f"{api.url}/sink")
    task = create_task(sdk, creds, _pg(signed, base_path, pg_schema), target, detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 1200)
    got = sorted(api.state.received, key=lambda r: r["id"])
    assert [r["id"] for r in got] == list(range(1, 1201))
    assert got[0] == {"id": 1, "name": "ü1", "amount": str(amount(1)),
                      "at": "2026-01-01T00:00:01+00:00"}  # fmt: skip
    assert len(set(api.state.keys)) == len(api.state.keys)


def _event_ts(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


@pytest.mark.slow
def test_windows_resume_after_a_stop_without_loss_or_duplicates(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, api: FakeApi
) -> None:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    api.state.records = [
        {"id": h * 100 + k, "ts": _event_ts(base + timedelta(hours=h, minutes=7 * k))}
        for h in range(6)
        for k in range(5)
    ]
    api.state.delay_s = 0.1  # a batch (0.2 s) holds a page or two: a stop lands mid-read
    message = {
        "records": "$.items",
        "fields": [{"name": "id", "path": "$.id", "type": "bigint"},
                   {"name": "ts", "path": "$.ts", "type": "timestamptz"}],
        "paging": {"type": "page", "param": "page", "size_param": "size", "size": 2},
        "window": {"start_param": "from", "end_param": "to", "size_s": 3600},
    }  # fmt: skip
    detail = {
        "sourceSelectedDatasource": {
            "table": "events", "message": message,
            "incremental": {"column": "ts", "start": base.isoformat()},
        },
        "targetSelectedDatasource": {"table": "events"},
    }  # fmt: skip
    source = _api(signed, base_path, f"{api.url}/events")
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    stopping = threading.Event()
    api.state.on_request = lambda n: stopping.set() if n == 8 else None
    _run(sdk, creds, task)
    assert stopping.wait(30)
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    first = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert first.execute_status == "CANCELLED"
    assert 0 < first.data_count < 30

    api.state.delay_s, api.state.on_request = 0.0, None
    _run(sdk, creds, task)
    second = wait_for(lambda: _finished(sdk, creds, task, runs=2), timeout=60)
    assert second.execute_status == "SUCCESS"
    ids = [row[0] for row in _rows(pg_schema, "events")]
    assert sorted(ids) == sorted(r["id"] for r in api.state.records)  # each once
    assert first.data_count + second.data_count == 30

    # New events after the last window: the next run reads exactly them.
    later = datetime.now(UTC) + timedelta(seconds=1)
    api.state.records += [{"id": 9000 + k, "ts": _event_ts(later)} for k in range(3)]
    wait_for(lambda: datetime.now(UTC) > later + timedelta(seconds=1), timeout=10)
    _run(sdk, creds, task)
    third = wait_for(lambda: _finished(sdk, creds, task, runs=3), timeout=60)
    assert (third.execute_status, third.data_count) == ("SUCCESS", 3)
    assert len(_rows(pg_schema, "events")) == 33


@pytest.mark.parametrize(
    ("kind", "reason"), [("deep", "nested too deeply"), ("huge", "larger than")]
)
def test_a_hostile_answer_fails_the_run_and_the_server_goes_on(
    sdk: Any,
    creds: Any,
    signed: Any,
    base_path: str,
    pg_schema: str,
    api: FakeApi,
    kind: str,
    reason: str,
) -> None:
    detail = {
        "sourceSelectedDatasource": {
            "table": "x", "message": {"records": "$.items", "max_response_bytes": 4_000_000}
        },
        "targetSelectedDatasource": {"table": "x"},
    }  # fmt: skip
    source = _api(signed, base_path, f"{api.url}/hostile/{kind}")
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=60)
    assert log.execute_status == "ERROR"
    assert reason in log.remarks
    assert signed.get("/healthz").status_code == 200


def test_invalid_settings_are_refused_at_create_and_test_connect_says_why(
    signed: Any, base_path: str, pg_schema: str, api: FakeApi
) -> None:
    api.state.auth = "bearer"
    body = {"datasource_name": "bad-api", "datasource_type": "API", "content": {"url": "ftp://x"}}
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert (reply.status_code, reply.json()["error_code"]) == (400, "FDI.3033")
    assert "content.url" in reply.json()["error_msg"]

    source = _api(signed, base_path, f"{api.url}/orders", BEARER)
    detail = {
        "sourceSelectedDatasource": {"table": "orders", "message": {"paging": {"type": "pages"}}},
        "targetSelectedDatasource": {"table": "orders"},
    }
    task = {"task_name": "bad-paging", "task_type": "TIMING", "source_datasource_id": source,
            "target_datasource_id": _pg(signed, base_path, pg_schema)}  # fmt: skip
    reply = signed.post(f"{base_path}/tasks", json={"task": task, "task_detail": _text(detail)})
    assert (reply.status_code, reply.json()["error_code"]) == (400, "FDI.3033")
    assert "message.paging.type" in reply.json()["error_msg"]

    shown = signed.get(f"{base_path}/datasources/{source}").json()
    assert shown["content"]["api_auth_detail"] == "******"
    connect = f"{base_path}/datasources/{source}/test-connect"
    api.state.records = _records(1)
    assert signed.post(connect).status_code == 200
    wrong = {**shown, "content": {**shown["content"],
             "api_auth_detail": {"auth_method": "bearer", "token": "Wrong-token-9"}}}  # fmt: skip
    reply = signed.post(connect, json=wrong)
    assert (reply.status_code, reply.json()["error_code"]) == (400, "FDI.3016")
    assert "401" in reply.json()["error_msg"]
    assert "Wrong-token-9" not in reply.json()["error_msg"]
    tables = signed.get(f"{base_path}/datasources/{source}/tables", params={"position": "SOURCE"})
    assert tables.json()["tables"] == ["orders"]


def _count(schema: str) -> int:
    """Rows in the events table, 0 before the first batch created it."""
    try:
        return len(_rows(schema, "events"))
    except psycopg.errors.UndefinedTable:
        return 0


def _text(detail: dict[str, Any]) -> str:
    return json.dumps(detail)


def test_a_realtime_task_polls_new_windows_and_stops_within_the_deadline(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, api: FakeApi
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    api.state.records = [{"id": k, "ts": _event_ts(start + timedelta(minutes=k))} for k in range(4)]
    message = {
        "records": "$.items",
        "fields": [{"name": "id", "path": "$.id", "type": "bigint"},
                   {"name": "ts", "path": "$.ts", "type": "timestamptz"}],
        "window": {"start_param": "from", "end_param": "to", "size_s": 600},
    }  # fmt: skip
    detail = {
        "sourceSelectedDatasource": {"table": "events", "message": message,
                                     "incremental": {"column": "ts", "start": start.isoformat()}},
        "targetSelectedDatasource": {"table": "events"},
    }  # fmt: skip
    source = _api(signed, base_path, f"{api.url}/events")
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail, "REALTIME")
    batch = BatchStartOrStopTasksRequest(instance_id=creds.instance_id,
        body=OperateTasksBean(action_id="start", list=[TaskBean(task_id=task)]))  # fmt: skip
    sdk.batch_start_or_stop_tasks(batch)
    wait_for(lambda: _count(pg_schema) == 4, timeout=30)
    api.state.records.append({"id": 10, "ts": _event_ts(datetime.now(UTC))})
    wait_for(lambda: _count(pg_schema) == 5, timeout=30)
    batch.body.action_id = "stop"
    stopped = time.monotonic()
    sdk.batch_start_or_stop_tasks(batch)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=30)
    assert log.execute_status == "CANCELLED"
    assert time.monotonic() - stopped < 5
    assert sorted(r[0] for r in _rows(pg_schema, "events")) == [0, 1, 2, 3, 10]
