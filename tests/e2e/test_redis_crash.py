"""kill -9 of the server while a REALTIME task moves a Redis stream into PostgreSQL, with 20,000
messages in flight (some still being published): after the restart the task resumes by itself,
the entries read and never acknowledged come back, and the target holds every message once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.e2e.process import Served
from tests.e2e.test_crash import BASE, ENV, _client, _logs, _wait
from tests.services import PG_ADMIN_URL, require

pytestmark = pytest.mark.slow

TOTAL = 20_000


@pytest.fixture
def stream_and_schema() -> Iterator[tuple[str, str]]:
    require("redis")
    require("postgres")
    name = f"openfdi_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name, name
    redis.Redis().delete(name)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _publish(stream: str, ids: range) -> None:
    pipe = redis.Redis().pipeline(transaction=False)
    for i in ids:
        doc = {"order": {"id": i}, "name": f"ü{i}", "amount": f"{i}.5"}
        pipe.xadd(stream, {"payload": json.dumps(doc, ensure_ascii=False)})
    pipe.execute()


def _ids(schema: str) -> list[int]:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = 'orders'",
            (schema,),
        ).fetchone()
        if found is None:
            return []
        return [r[0] for r in conn.execute(f'SELECT id FROM "{schema}".orders ORDER BY id')]


def test_kill_9_mid_stream_then_restart_writes_every_message_once(
    tmp_path: Path, stream_and_schema: tuple[str, str]
) -> None:
    stream, schema = stream_and_schema
    _publish(stream, range(1, TOTAL // 2 + 1))
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    producer: threading.Thread | None = None
    try:
        with _client(served) as client:
            ids = []
            for kind, content in (
                ("REDIS", {"host": "127.0.0.1", "port": "6379"}),
                ("POSTGRESQL", {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
                                "user_name": "postgres", "password": "unused",
                                "schema": schema}),
            ):  # fmt: skip
                reply = client.post(
                    f"{BASE}/datasources",
                    json={"datasource_name": f"ds-{kind}", "datasource_type": kind,
                          "content": content},
                )  # fmt: skip
                assert reply.status_code == 201, reply.text
                ids.append(reply.json()["datasource_id"])
            fields = [
                {"name": "id", "path": "$.order.id", "type": "bigint"},
                {"name": "name", "path": "$.name", "type": "text"},
                {"name": "amount", "path": "$.amount", "type": "decimal"},
            ]
            detail = {
                "sourceSelectedDatasource": {"table": stream, "message": {"fields": fields}},
                "targetSelectedDatasource": {"table": "orders", "writeMode": "upsert",
                                             "keyColumns": ["id"]},
            }  # fmt: skip
            body = {
                "task": {"task_name": "redis-crash", "task_type": "REALTIME",
                         "source_datasource_id": ids[0], "target_datasource_id": ids[1]},
                "task_detail": json.dumps(detail),
            }  # fmt: skip
            reply = client.post(f"{BASE}/tasks", json=body)
            assert reply.status_code == 200, reply.text
            task = reply.json()["task"]["task_id"]
            # The second half arrives while the task runs, and goes on while the server is down.
            producer = threading.Thread(
                target=lambda: [
                    (_publish(stream, range(lo, lo + 250)), time.sleep(0.05))
                    for lo in range(TOTAL // 2 + 1, TOTAL + 1, 250)
                ]
            )
            reply = client.post(
                f"{BASE}/batch-operation/tasks",
                json={"action_id": "start", "list": [{"task_id": task}]},
            )
            assert reply.json()["success_count"] == 1
            producer.start()
            _wait(lambda: _ids(schema), 60)
        served.kill()
        copied_before = len(_ids(schema))
        assert 0 < copied_before < TOTAL
        producer.join()

        served.start()  # nobody asks: the supervisor resumes the started task
        _wait(lambda: len(_ids(schema)) == TOTAL, 120)
        assert _ids(schema) == list(range(1, TOTAL + 1))
        _wait(lambda: redis.Redis().xpending(stream, "openfdi")["pending"] == 0, 10)
        with _client(served) as client:
            logs = _logs(client, task)
        assert logs[0]["execute_status"] == "RUNNING", logs
        assert logs[-1]["execute_status"] == "ERROR", logs
        assert "interrupted" in logs[-1]["remarks"], logs
    finally:
        if producer is not None and producer.is_alive():
            producer.join()
        if served.proc is not None:
            served.stop()
