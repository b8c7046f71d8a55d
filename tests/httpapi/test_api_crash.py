"""kill -9 of the server while a TIMING task reads a paged, windowed API into PostgreSQL: the next
run resumes from the last committed page and the target holds every record once (a plain insert:
a page read twice would show as a duplicate)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.e2e.process import Served
from tests.e2e.test_crash import BASE, ENV, _client, _logs, _wait
from tests.httpapi.fake_api import FakeApi
from tests.services import PG_ADMIN_URL, require

pytestmark = pytest.mark.slow

TOTAL = 240


@pytest.fixture
def schema() -> Iterator[str]:
    require("postgres")
    name = f"openfdi_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _ids(schema: str) -> list[int]:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = 'events'",
            (schema,),
        ).fetchone()
        if found is None:
            return []
        return [r[0] for r in conn.execute(f'SELECT id FROM "{schema}".events ORDER BY id')]


def test_kill_9_mid_read_then_the_next_run_reads_every_page_once(
    tmp_path: Path, schema: str, api: FakeApi
) -> None:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12)
    api.state.records = [
        {"id": i, "ts": (base + timedelta(minutes=3 * i)).isoformat()} for i in range(TOTAL)
    ]
    api.state.delay_s = 0.05  # about 20 pages a second: the kill lands mid-read
    message = {
        "records": "$.items",
        "fields": [{"name": "id", "path": "$.id", "type": "bigint"},
                   {"name": "ts", "path": "$.ts", "type": "timestamptz"}],
        "paging": {"type": "page", "param": "page", "size_param": "size", "size": 3},
        "window": {"start_param": "from", "end_param": "to", "size_s": 3600},
    }  # fmt: skip
    detail = {
        "sourceSelectedDatasource": {"table": "events", "message": message,
                                     "incremental": {"column": "ts", "start": base.isoformat()}},
        "targetSelectedDatasource": {"table": "events"},
    }  # fmt: skip
    served = Served(tmp_path, demo=False, env=ENV)
    served.start()
    try:
        with _client(served) as client:
            ids = []
            for kind, content in (
                ("API", {"url": f"{api.url}/events"}),
                ("POSTGRESQL", {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
                                "user_name": "postgres", "password": "unused", "schema": schema}),
            ):  # fmt: skip
                body = {"datasource_name": f"ds-{kind}", "datasource_type": kind,
                        "content": content}  # fmt: skip
                reply = client.post(f"{BASE}/datasources", json=body)
                assert reply.status_code == 201, reply.text
                ids.append(reply.json()["datasource_id"])
            body = {
                "task": {"task_name": "api-crash", "task_type": "TIMING",
                         "source_datasource_id": ids[0], "target_datasource_id": ids[1]},
                "task_detail": json.dumps(detail),
            }  # fmt: skip
            reply = client.post(f"{BASE}/tasks", json=body)
            assert reply.status_code == 200, reply.text
            task = reply.json()["task"]["task_id"]
            assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            _wait(lambda: len(_ids(schema)) >= 30, 60)
        served.kill()
        before = len(_ids(schema))
        assert 0 < before < TOTAL

        api.state.delay_s = 0.0
        served.start()
        with _client(served) as client:
            # The killed run is given up once its lease expires; then a new run may start.
            _wait(lambda: _logs(client, task)[0]["execute_status"] != "RUNNING", 30)
            assert client.post(f"{BASE}/tasks/{task}/run").status_code == 200
            _wait(lambda: len(_logs(client, task)) == 2, 10)
            _wait(lambda: _logs(client, task)[0]["execute_status"] == "SUCCESS", 60)
            logs = _logs(client, task)
        assert _ids(schema) == list(range(TOTAL))  # every record, once
        assert logs[0]["data_count"] == TOTAL - before
    finally:
        if served.proc is not None:
            served.stop()
