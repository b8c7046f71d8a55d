"""The kill -9 harness every message system's crash test shares.

A real `openfdi serve` (its own port and data dir) runs a REALTIME task from a message source
into a PostgreSQL upsert table. Once the task is subscribed, a producer publishes `total`
messages in paced chunks; when a random number of them (10 % to 50 %, seeded and printed) is in
the target, the server is killed with SIGKILL while the run is writing, and the producer goes on
publishing while it is down. The restarted server resumes the started task by itself; the test
waits for every message and checks the target holds each one exactly once, with its values.

What makes that hold: a source acknowledges a batch only after the target and the checkpoint
committed it, so the killed run's unacknowledged messages come back (at-least-once delivery),
and the upsert key absorbs the ones that were committed but not yet acknowledged when the
process died (exactly once in the target). The report counts how many were written twice.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.e2e.process import Served
from tests.e2e.test_crash import BASE, ENV, _client, _logs, _wait
from tests.services import PG_ADMIN_URL

CHUNK = 1000
"""Messages per publish call; the producer sleeps PAUSE_S between two: fast enough that the run
has a backlog (it is writing, with messages in flight, when the kill comes), paced so that it
cannot have read everything by then."""
PAUSE_S = 0.02
TABLE = "events"
FIELDS = [
    {"name": "id", "path": "$.order.id", "type": "bigint"},
    {"name": "name", "path": "$.name", "type": "text"},
    {"name": "amount", "path": "$.amount", "type": "decimal"},
]


def message(i: int) -> bytes:
    """Message `i`: a nested id, non-ASCII text and a decimal that must survive exactly."""
    doc = {"order": {"id": i}, "name": f"ü{i} ünï", "amount": f"{i}.5"}
    return json.dumps(doc, ensure_ascii=False).encode()


@dataclass
class MessageSource:
    """One system's side of the harness."""

    kind: str
    """The datasource type (RABBITMQ, REDIS, NATS, MQTT)."""
    content: dict[str, Any]
    table: str
    publish: Callable[[list[bytes]], None]
    """Publish these payloads, returning once the system has them all."""
    options: dict[str, Any] = field(default_factory=dict)
    """The task's `message` keys besides `fields`."""
    settled: Callable[[], bool] = lambda: True
    """True once the system holds nothing unacknowledged for the task (checked at the end)."""


@dataclass
class CrashReport:
    seed: int
    kill_at: int
    """Rows in the target when the kill was sent."""
    rows_before_restart: int
    rows_written: int
    """Rows the runs' monitor logs count as written: more than the messages when some were
    written again after the restart (committed, not yet acknowledged at the kill)."""
    seconds: float


def _count(schema: str) -> int:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (schema, TABLE),
        ).fetchone()
        if found is None:
            return 0
        row = conn.execute(f'SELECT count(*) FROM "{schema}".{TABLE}').fetchone()
        return int(row[0]) if row else 0


def _create_task(client: httpx.Client, source: MessageSource, schema: str) -> str:
    ids = []
    pg = {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
          "user_name": "postgres", "password": "unused", "schema": schema}  # fmt: skip
    for kind, content in ((source.kind, source.content), ("POSTGRESQL", pg)):
        reply = client.post(
            f"{BASE}/datasources",
            json={"datasource_name": f"crash-{kind.lower()}", "datasource_type": kind,
                  "content": content},
        )  # fmt: skip
        assert reply.status_code == 201, reply.text
        ids.append(reply.json()["datasource_id"])
    detail = {
        "sourceSelectedDatasource": {"table": source.table,
                                     "message": {**source.options, "fields": FIELDS}},
        "targetSelectedDatasource": {"table": TABLE, "writeMode": "upsert",
                                     "keyColumns": ["id"]},
    }  # fmt: skip
    body = {
        "task": {"task_name": f"crash-{source.kind.lower()}", "task_type": "REALTIME",
                 "source_datasource_id": ids[0], "target_datasource_id": ids[1]},
        "task_detail": json.dumps(detail),
    }  # fmt: skip
    reply = client.post(f"{BASE}/tasks", json=body)
    assert reply.status_code == 200, reply.text
    task = str(reply.json()["task"]["task_id"])
    reply = client.post(
        f"{BASE}/batch-operation/tasks", json={"action_id": "start", "list": [{"task_id": task}]}
    )
    assert reply.json()["success_count"] == 1, reply.text
    return task


def _subscribed(source: MessageSource, schema: str) -> bool:
    """Message 0, sent until it lands: an MQTT session or a group created by the run's start
    gets nothing published before it exists, so the producer waits for this."""
    source.publish([message(0)])
    end = time.monotonic() + 1
    while time.monotonic() < end:
        if _count(schema):
            return True
        time.sleep(0.05)
    return False


def _produce(source: MessageSource, total: int, published: list[int]) -> None:
    for lo in range(1, total + 1, CHUNK):
        source.publish([message(i) for i in range(lo, min(lo + CHUNK, total + 1))])
        published.append(min(lo + CHUNK, total + 1) - lo)
        time.sleep(PAUSE_S)


def kill_mid_run_and_resume(
    workdir: Path, schema: str, source: MessageSource, total: int = 20_000
) -> CrashReport:
    """Run the scenario (module docstring) and assert its outcome; returns what happened."""
    seed = int(os.environ.get("OPENFDI_CRASH_SEED") or random.randrange(1 << 30))
    kill_at = random.Random(seed).randint(total // 10, total // 2)
    print(f"{source.kind}: seed {seed} (OPENFDI_CRASH_SEED), kill at {kill_at} rows of {total}")
    started = time.monotonic()
    served = Served(workdir, demo=False, env=ENV)
    served.start()
    published: list[int] = []
    producer = threading.Thread(target=_produce, args=(source, total, published), daemon=True)
    try:
        with _client(served) as client:
            task = _create_task(client, source, schema)
            _wait(lambda: _subscribed(source, schema), 60)
            producer.start()
            _wait(lambda: _count(schema) >= kill_at, 60)
            in_system = sum(published)
        served.kill()
        before = _count(schema)
        print(f"killed with {before - 1} rows in the target, {in_system} published")
        assert before - 1 < total, "the run ended before the kill: nothing was in flight"
        producer.join(120)  # it went on publishing while the server was down
        assert not producer.is_alive()

        served.start()  # nobody asks: the supervisor resumes the started task
        _wait(lambda: _count(schema) >= total + 1, 120)
        with psycopg.connect(PG_ADMIN_URL) as conn:
            counts = conn.execute(
                f'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "{schema}".{TABLE}'
            ).fetchone()
            sample = conn.execute(
                f'SELECT name, amount FROM "{schema}".{TABLE} WHERE id = %s', (total // 3,)
            ).fetchone()
        assert counts == (total + 1, total + 1, 0, total), counts
        assert sample is not None
        assert (sample[0], str(sample[1])) == (f"ü{total // 3} ünï", f"{total // 3}.5")
        _wait(source.settled, 30)
        with _client(served) as client:
            logs = _logs(client, task)
        assert logs[0]["execute_status"] == "RUNNING", logs
        assert logs[-1]["execute_status"] == "ERROR", logs
        assert "interrupted" in logs[-1]["remarks"], logs
        written = sum(int(log["data_count"]) for log in logs)
    finally:
        if producer.is_alive():
            producer.join(120)
        if served.proc is not None:
            served.stop()
    report = CrashReport(seed, kill_at, before, written, time.monotonic() - started)
    print(report)
    return report
