"""kill -9 of the server while a REALTIME task moves a NATS stream into PostgreSQL, with 20,000
messages in flight: after the restart the task resumes by itself, the messages the killed run
read and never acknowledged come back (after ack_wait), and the upsert target holds every
message exactly once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.process import Served
from tests.e2e.test_crash import BASE, ENV, _client, _logs, _wait
from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.messages.nats_support import (  # noqa: F401 - nats_stream is a fixture
    NATS,
    consumer_info,
    make_stream,
    nats_stream,
    publish,
)
from tests.services import PG_ADMIN_URL

TOTAL = 20_000


def _ids(schema: str) -> list[int]:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (schema, "events"),
        ).fetchone()
        if found is None:
            return []
        return [r[0] for r in conn.execute(f'SELECT id FROM "{schema}".events ORDER BY id')]


def _body(i: int) -> bytes:
    return f'{{"id": {i}, "body": "event {i} ünï", "amount": "{i}.5"}}'.encode()


def _task(client: Any, stream: str, schema: str) -> str:
    ids = []
    for kind, content in (
        ("NATS", NATS),
        ("POSTGRESQL", {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
                        "user_name": "postgres", "password": "unused", "schema": schema}),
    ):  # fmt: skip
        reply = client.post(
            f"{BASE}/datasources",
            json={"datasource_name": f"ds-{kind.lower()}", "datasource_type": kind,
                  "content": content},
        )  # fmt: skip
        assert reply.status_code == 201, reply.text
        ids.append(reply.json()["datasource_id"])
    fields = [
        {"name": "id", "path": "$.id", "type": "bigint"},
        {"name": "body", "path": "$.body", "type": "text"},
        {"name": "amount", "path": "$.amount", "type": "decimal"},
    ]
    detail = {
        "sourceSelectedDatasource": {"table": stream,
                                     "message": {"fields": fields, "ack_wait": 2}},
        "targetSelectedDatasource": {"table": "events", "writeMode": "upsert",
                                     "keyColumns": ["id"]},
    }  # fmt: skip
    body = {
        "task": {"task_name": "nats-crash", "task_type": "REALTIME",
                 "source_datasource_id": ids[0], "target_datasource_id": ids[1]},
        "task_detail": json.dumps(detail),
    }  # fmt: skip
    reply = client.post(f"{BASE}/tasks", json=body)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["task"]["task_id"])


@pytest.mark.slow
def test_kill_mid_stream_then_restart_writes_every_message_once(
    tmp_path: Path,
    pg_schema: str,  # noqa: F811 - the fixture imported above
    nats_stream: str,  # noqa: F811 - the fixture imported above
) -> None:
    make_stream(nats_stream)
    publish(nats_stream, [_body(i) for i in range(1, 5001)])
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()

    def publish_the_rest() -> None:  # the other 15,000 keep coming while the server dies
        for start in range(5001, TOTAL + 1, 500):
            publish(nats_stream, [_body(i) for i in range(start, start + 500)])
            time.sleep(0.05)

    rest = threading.Thread(target=publish_the_rest)
    try:
        with _client(served) as client:
            task = _task(client, nats_stream, pg_schema)
            reply = client.post(
                f"{BASE}/batch-operation/tasks",
                json={"action_id": "start", "list": [{"task_id": task}]},
            )
            assert reply.json()["success_count"] == 1
            rest.start()
            _wait(lambda: len(_ids(pg_schema)) > 0, 60)
        served.kill()
        before = len(_ids(pg_schema))
        rest.join()
        assert 0 < before < TOTAL

        served.start()  # nobody asks: the supervisor resumes the started task
        _wait(lambda: len(_ids(pg_schema)) == TOTAL, 120)
        assert _ids(pg_schema) == list(range(1, TOTAL + 1))
        with psycopg.connect(PG_ADMIN_URL) as conn:
            row = conn.execute(
                f'SELECT body, amount FROM "{pg_schema}".events WHERE id = 12345'
            ).fetchone()
        assert row is not None
        assert (row[0], str(row[1])) == ("event 12345 ünï", "12345.5")
        _wait(lambda: consumer_info(nats_stream, f"openfdi-{nats_stream}").num_ack_pending == 0)
        with _client(served) as client:
            logs = _logs(client, task)
        assert logs[0]["execute_status"] == "RUNNING", logs
        assert logs[-1]["execute_status"] == "ERROR", logs
        assert "interrupted" in logs[-1]["remarks"], logs
    finally:
        if rest.is_alive():
            rest.join()
        if served.proc is not None:
            served.stop()
