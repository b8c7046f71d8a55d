"""`/metrics` shows a REALTIME run's source backlog while it reads a Redis stream into
PostgreSQL (`openfdi_source_backlog{task_id,source_type}`), down to 0 once it caught up, and
the series goes when the run ends: with runs in the server, and in a worker process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.message_crash import FIELDS, message
from tests.e2e.process import Served
from tests.e2e.test_crash import BASE, ENV, _client, _logs, _wait
from tests.engine.conftest import pg_schema  # noqa: F401 - a fixture
from tests.messages.redis_support import admin, redis_ns  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow
TOTAL = 40_000


def _backlog(served: Served, task: str) -> float | None:
    text = httpx.get(f"{served.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "openfdi_source_backlog" and sample.labels["task_id"] == task:
                assert sample.labels["source_type"] == "REDIS"
                return float(sample.value)
    return None


@pytest.mark.parametrize("workers", ["0", "1"])
def test_metrics_show_the_backlog_of_a_realtime_run_until_it_ends(
    tmp_path: Path,
    pg_schema: str,  # noqa: F811 - the fixture imported above
    redis_ns: str,  # noqa: F811 - the fixture imported above
    workers: str,
) -> None:
    pipe = admin().pipeline(transaction=False)
    for i in range(TOTAL):
        pipe.xadd(redis_ns, {"payload": message(i)})
    pipe.execute()
    served = Served(tmp_path, demo=False, env={**ENV, "OPENFDI_WORKER_PROCESSES": workers})
    served.start()
    try:
        with _client(served) as client:
            ids = []
            for kind, content in (
                ("REDIS", {"host": "127.0.0.1", "port": "6379"}),
                ("POSTGRESQL", {"host": "127.0.0.1", "port": "5432", "database_name": "postgres",
                                "user_name": "postgres", "password": "unused",
                                "schema": pg_schema}),
            ):  # fmt: skip
                reply = client.post(
                    f"{BASE}/datasources",
                    json={"datasource_name": f"ds-{kind}", "datasource_type": kind,
                          "content": content},
                )  # fmt: skip
                assert reply.status_code == 201, reply.text
                ids.append(reply.json()["datasource_id"])
            detail = {
                "sourceSelectedDatasource": {"table": redis_ns, "message": {"fields": FIELDS}},
                "targetSelectedDatasource": {"table": "events"},
            }
            body = {
                "task": {"task_name": "backlog", "task_type": "REALTIME",
                         "source_datasource_id": ids[0], "target_datasource_id": ids[1]},
                "task_detail": json.dumps(detail),
            }  # fmt: skip
            reply = client.post(f"{BASE}/tasks", json=body)
            assert reply.status_code == 200, reply.text
            task = str(reply.json()["task"]["task_id"])
            assert _backlog(served, task) is None  # no run: no series
            start = {"action_id": "start", "list": [{"task_id": task}]}
            assert client.post(f"{BASE}/batch-operation/tasks", json=start).status_code == 200

            seen: list[float] = []
            deadline = time.monotonic() + 90
            while not (seen and seen[-1] == 0) and time.monotonic() < deadline:
                value = _backlog(served, task)
                if value is not None and (not seen or seen[-1] != value):
                    seen.append(value)
                time.sleep(0.05)
            # While reading, what the group has not been handed yet; then 0, caught up.
            print("backlog seen:", seen)
            assert seen, "no backlog on /metrics"
            assert 0 < seen[0] < TOTAL, seen
            assert seen[-1] == 0, seen
            assert seen == sorted(seen, reverse=True), seen

            stop = {"action_id": "stop", "list": [{"task_id": task}]}
            assert client.post(f"{BASE}/batch-operation/tasks", json=stop).status_code == 200
            _wait(lambda: _logs(client, task)[0]["execute_status"] != "RUNNING", 30)
            _wait(lambda: _backlog(served, task) is None, 10)  # the run ended: series gone
    finally:
        served.stop()
