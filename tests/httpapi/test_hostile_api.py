"""Hostile HTTP APIs against API task ends, driven through the served openfdi and the official
SDK, each run judged by its monitor log: a cursor or next link that leads back to an earlier page
fails the run instead of reading (and writing) the cycle for ever; a lone surrogate (`"\\ud800"`)
is one refused record, not a failed batch; an empty 200, a redirect loop, a gzip bomb, a
server slower than the timeout and a total that lies end the run with a remark that says why
(a stop ends a run waiting on a slow server within the deadline); a target that closes the
connection, answers 413 or answers 200 with a body that is not JSON is met as documented."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from huaweicloudsdkroma.v2 import StopTaskRequest
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from openfdi.connectors.api import SPEC
from openfdi.connectors.spi import Batch, Column, LogicalType, TableSchema, WritePlan
from tests.engine.conftest import create_task, wait_for
from tests.httpapi.fake_api import FakeApi
from tests.messages.test_message_tasks import _datasource, _finished, _pg, _rows, _run
from tests.services import PG_ADMIN_URL

FIELDS = [{"name": "id", "path": "$.id", "type": "bigint"},
          {"name": "name", "path": "$.name", "type": "text"}]  # fmt: skip
CYCLE = {"A": "B", "B": "C", "C": "A"}
"""Three pages whose cursors lead back to the first."""
BOMB = gzip.compress(b'{"items": [' + b" " * (64 << 20) + b"]}", 9)
"""64 MiB of JSON in about 64 KiB of gzip."""


def _page(request: Request, key: str) -> dict[str, Any]:
    at = request.query_params.get(key, "A")
    return {"items": [{"id": ord(at), "name": at}], "next": CYCLE[at]}


async def _cursor(request: Request) -> Response:
    return JSONResponse(_page(request, "cursor"))


async def _link(request: Request) -> Response:
    page = _page(request, "p")
    return JSONResponse({**page, "next": f"/link-cycle?p={page['next']}"})


async def _surrogate(request: Request) -> Response:
    body = b'{"items": [{"id": 1, "name": "\\ud800"}, {"id": 2, "name": "b"}, {"id": 3}]}'
    return Response(body, media_type="application/json")


async def _huge_double(request: Request) -> Response:
    body = (b'{"items": [{"id": 1, "ratio": 1e400}, {"id": 2, "ratio": "-1e999"},'
            b' {"id": 3, "ratio": 2.5}]}')  # fmt: skip
    return Response(body, media_type="application/json")


async def _empty(request: Request) -> Response:
    return Response(b"", media_type="application/json")


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/redirect", status_code=302)


async def _slow(request: Request) -> Response:
    await asyncio.sleep(8)
    return JSONResponse({"items": []})


async def _bomb(request: Request) -> Response:
    return Response(BOMB, media_type="application/json", headers={"Content-Encoding": "gzip"})


async def _liar(request: Request) -> Response:
    """Pages of 2 of 5 records, claiming 1,000."""
    page = int(request.query_params.get("page", 1))
    items = [{"id": i} for i in range(1, 6)][(page - 1) * 2 : page * 2]
    return JSONResponse({"items": items, "total": 1000})


async def _odd_total(request: Request) -> Response:
    """Pages of 2 of 5 records, with a total that is no count (the query says which)."""
    page = int(request.query_params.get("page", 1))
    items = [{"id": i} for i in range(1, 6)][(page - 1) * 2 : page * 2]
    total = request.query_params["total"].encode()
    return Response(b'{"items": %s, "total": %s}' % (json.dumps(items).encode(), total),
                    media_type="application/json")  # fmt: skip


async def _too_large(request: Request) -> Response:
    return JSONResponse({"error": "too large"}, status_code=413)


async def _not_json(request: Request) -> Response:
    await request.body()
    return Response(b"<html>thanks</html>", media_type="text/html")


ROUTES = {"/cursor-cycle": _cursor, "/link-cycle": _link, "/surrogate": _surrogate,
          "/empty": _empty, "/redirect": _redirect, "/slow": _slow, "/bomb": _bomb,
          "/liar": _liar, "/huge-double": _huge_double, "/odd-total": _odd_total,
          "/too-large": _too_large, "/not-json": _not_json}  # fmt: skip


@pytest.fixture
def hostile(api: FakeApi) -> FakeApi:
    """The test's fake API with the hostile endpoints above (Starlette looks routes up per
    request, so they may join a running server)."""
    api.app.router.routes.extend(Route(path, handler, methods=["GET", "POST"])
                                 for path, handler in ROUTES.items())  # fmt: skip
    return api


def _source_run(sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, url: str,
                message: dict[str, Any], timeout: float = 30) -> Any:  # fmt: skip
    source = _datasource(signed, base_path, "API", {"url": url, "api_method": "GET"})
    detail = {"sourceSelectedDatasource": {"table": "t", "message": message},
              "targetSelectedDatasource": {"table": "t"}}  # fmt: skip
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    _run(sdk, creds, task)
    try:
        log = wait_for(lambda: _finished(sdk, creds, task), timeout=timeout)
    finally:  # a run that never ends must not outlive the test
        sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    log.task_id = task
    return log


def _dirty(signed: Any, base_path: str, log: Any) -> list[dict[str, Any]]:
    reply = signed.get(f"{base_path}/tasks/{log.task_id}/runs/{log.id}/dirty-data")
    assert reply.status_code == 200, reply.text
    return list(reply.json()["entities"])


@pytest.mark.parametrize(
    ("path", "paging", "shown"),
    [("/cursor-cycle", {"type": "cursor", "next_path": "$.next"}, "cursor 'B'"),
     ("/link-cycle", {"type": "link", "next_path": "$.next"}, "next-page link")],
)  # fmt: skip
def test_a_cursor_or_link_leading_back_fails_the_run_instead_of_reading_for_ever(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi,
    path: str, paging: dict[str, Any], shown: str,
) -> None:  # fmt: skip
    """Without the check each page of the cycle was read and written again until a stop
    (24,000 rows in 20 s); the same cursor twice in a row was the only one refused."""
    message = {"records": "$.items", "fields": FIELDS, "paging": paging}
    log = _source_run(sdk, creds, signed, base_path, pg_schema, hostile.url + path, message, 15)
    assert log.execute_status == "ERROR", log.remarks
    assert "(a cycle)" in log.remarks, log.remarks
    assert shown in log.remarks
    assert log.data_count == 0  # the pages before the cycle were one batch, never committed


def test_a_lone_surrogate_is_one_refused_record_and_the_others_are_written(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi
) -> None:
    """PostgreSQL cannot store U+D800: the target's encoder failed the whole run with
    "internal error: 'utf-8' codec can't encode character" and wrote none of the records."""
    message = {"records": "$.items", "fields": FIELDS}
    log = _source_run(sdk, creds, signed, base_path, pg_schema, hostile.url + "/surrogate", message)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 2, 1), (
        log.remarks
    )
    assert _rows(pg_schema, "t") == [(2, "b"), (3, None)]
    [dirty] = _dirty(signed, base_path, log)
    assert "field name" in dirty["reason"]
    assert "lone surrogate" in dirty["reason"]
    assert "\\\\ud800" in dirty["row"]  # shown as an escape, storable anywhere


def test_a_number_too_large_for_a_double_is_refused_not_written_as_infinity(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi
) -> None:
    """1e400 became float('inf'): PostgreSQL stored Infinity, silently."""
    fields = [FIELDS[0], {"name": "ratio", "path": "$.ratio", "type": "double"}]
    message = {"records": "$.items", "fields": fields}
    url = hostile.url + "/huge-double"
    log = _source_run(sdk, creds, signed, base_path, pg_schema, url, message)
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 1, 2), (
        log.remarks
    )
    assert _rows(pg_schema, "t") == [(3, 2.5)]
    reasons = sorted(d["reason"] for d in _dirty(signed, base_path, log))
    assert all("out of range for a double" in r for r in reasons), reasons


@pytest.mark.parametrize(
    ("path", "options", "reason"),
    [("/empty", {}, "the response is not JSON"),
     ("/redirect", {}, "answered 302 (redirects are not followed"),
     ("/bomb", {"max_response_bytes": 4_000_000}, "larger than max_response_bytes"),
     ("/slow", {"timeout_s": 0.5, "retries": 1, "retry_max_s": 1}, "ReadTimeout")],
)  # fmt: skip
def test_a_hostile_answer_ends_the_run_with_a_remark_that_says_why(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi,
    path: str, options: dict[str, Any], reason: str,
) -> None:  # fmt: skip
    message = {"records": "$.items", "fields": FIELDS, **options}
    began = time.monotonic()
    log = _source_run(sdk, creds, signed, base_path, pg_schema, hostile.url + path, message)
    assert log.execute_status == "ERROR"
    assert reason in log.remarks, log.remarks
    assert "Traceback" not in log.remarks
    assert time.monotonic() - began < 8  # the slow one: two tries of 0.5 s, not the 8 s answer
    assert signed.get("/healthz").status_code == 200


def test_a_stop_ends_a_run_waiting_for_a_slow_answer_within_the_deadline(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi
) -> None:
    asked = threading.Event()
    hostile.state.on_request = lambda _n: asked.set()
    source = _datasource(signed, base_path, "API", {"url": hostile.url, "api_method": "GET"})
    message = {"path": "/slow", "records": "$.items", "fields": FIELDS, "timeout_s": 30}
    detail = {"sourceSelectedDatasource": {"table": "t", "message": message},
              "targetSelectedDatasource": {"table": "t"}}  # fmt: skip
    task = create_task(sdk, creds, source, _pg(signed, base_path, pg_schema), detail)
    hostile.app.router.routes.insert(0, Route("/slow", _gated_slow(hostile)))
    _run(sdk, creds, task)
    assert asked.wait(20)
    stopped = time.monotonic()
    sdk.stop_task(StopTaskRequest(instance_id=creds.instance_id, task_id=task))
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=10, interval=0.05)
    assert log.execute_status == "CANCELLED"
    assert time.monotonic() - stopped < 2.0


def _gated_slow(api: FakeApi) -> Any:
    async def slow(request: Request) -> Response:
        if api.state.on_request is not None:
            api.state.on_request(0)
        await asyncio.sleep(8)
        return JSONResponse({"items": []})

    return slow


def test_a_total_that_lies_ends_at_the_short_page_with_every_record_once(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi
) -> None:
    message = {"records": "$.items", "fields": [FIELDS[0]],
               "paging": {"type": "page", "size_param": "size", "size": 2,
                          "total_path": "$.total"}}  # fmt: skip
    log = _source_run(sdk, creds, signed, base_path, pg_schema, hostile.url + "/liar", message)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 5), log.remarks
    assert _rows(pg_schema, "t") == [(i,) for i in range(1, 6)]


@pytest.mark.parametrize("total", ["NaN", "Infinity", "true", "4.5", '"many"'])
def test_a_total_that_is_no_count_is_ignored_and_every_page_read(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi,
    total: str,
) -> None:  # fmt: skip
    """NaN and Infinity failed the run ("internal error: cannot convert float NaN to
    integer"); `true` counted as 1 and ended the read after its first page, 3 records lost."""
    message = {"records": "$.items", "fields": [FIELDS[0]], "query": {"total": total},
               "paging": {"type": "page", "size_param": "size", "size": 2,
                          "total_path": "$.total"}}  # fmt: skip
    url = hostile.url + "/odd-total"
    log = _source_run(sdk, creds, signed, base_path, pg_schema, url, message)
    assert (log.execute_status, log.data_count) == ("SUCCESS", 5), log.remarks
    assert _rows(pg_schema, "t") == [(i,) for i in range(1, 6)]


# --- targets -----------------------------------------------------------------------------------


@pytest.fixture
def closing_server() -> Iterator[str]:
    """A loopback server that reads a request's first bytes and closes the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(64)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    done.set()
    thread.join(5)
    listener.close()


def _target_run(sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, url: str,
                message: dict[str, Any]) -> Any:  # fmt: skip
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".src (id bigint primary key, name text)')
        conn.execute(
            f"INSERT INTO \"{pg_schema}\".src SELECT i, 'n' || i FROM generate_series(1, 5) i"
        )
    target = _datasource(signed, base_path, "API", {"url": url, "api_method": "POST"})
    detail = {"sourceSelectedDatasource": {"table": "src"},
              "targetSelectedDatasource": {"table": "src", "message": message}}  # fmt: skip
    task = create_task(sdk, creds, _pg(signed, base_path, pg_schema), target, detail)
    _run(sdk, creds, task)
    log = wait_for(lambda: _finished(sdk, creds, task), timeout=30)
    log.task_id = task
    return log


def test_a_target_closing_the_connection_fails_the_run_after_its_retries(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, closing_server: str
) -> None:
    # The tries bound the retries here, not the time: with 1 s of waiting allowed, two waits
    # of the jittered backoff (0.2-1.2 s, then 0.4-1.4 s) ended it after 2 tries now and then.
    message = {"retries": 2, "retry_max_s": 30}
    log = _target_run(sdk, creds, signed, base_path, pg_schema, closing_server, message)
    assert (log.execute_status, log.data_count) == ("ERROR", 0)
    assert "still after 3 tries" in log.remarks, log.remarks
    assert "Traceback" not in log.remarks


def test_a_413_refuses_the_rows_and_a_200_that_is_not_json_delivers_them(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi
) -> None:
    log = _target_run(sdk, creds, signed, base_path, pg_schema, hostile.url + "/too-large", {})
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 0, 5)
    assert all("413" in d["reason"] for d in _dirty(signed, base_path, log))


def test_a_200_whose_body_is_not_json_counts_as_delivered(
    sdk: Any, creds: Any, signed: Any, base_path: str, pg_schema: str, hostile: FakeApi
) -> None:
    log = _target_run(sdk, creds, signed, base_path, pg_schema, hostile.url + "/not-json", {})
    assert (log.execute_status, log.data_count, log.dirty_data_count) == ("SUCCESS", 5, 0)


def test_a_row_whose_text_utf8_cannot_carry_is_refused_and_the_others_delivered(
    hostile: FakeApi,
) -> None:
    """Connector level: the file and API sources now refuse such text, but a target takes rows
    from any connector (a message's JSON payload can carry "\\ud800"). Before, encoding the
    request body raised UnicodeEncodeError: the run failed as an "internal error", none of the
    batch delivered."""
    connector = SPEC.open({"url": hostile.url + "/sink"})
    connector.configure({"rows_per_request": 10})
    schema = TableSchema("t", (Column("id", LogicalType.BIGINT), Column("name", LogicalType.TEXT)))
    plan = WritePlan(table="t", source_schema=schema)
    try:
        connector.prepare_target(plan)
        rows = [(1, "a"), (2, "b\ud800"), (3, "c")]
        result = connector.write(Batch.of(schema.names, rows), plan)
        connector.commit()
    finally:
        connector.close()
    assert result.rows_written == 2
    assert [(r.row[0], r.reason) for r in result.rejected] == [
        (
            2,
            "cannot be written as JSON: a text value holds U+D800, a lone surrogate, which "
            "UTF-8 cannot encode",
        )
    ]
    assert [r["id"] for r in hostile.state.received] == [1, 3]
