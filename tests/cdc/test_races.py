"""Racing clients on the composite endpoints, on SQLite and PostgreSQL metadata: the same table
mapped, the same task id initialised, the same draft created, by 8 clients at once. Exactly one
wins each race; the others get the FDI error a lone late caller gets (never a 500), and the
metadata holds one of each."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from openfdi.client import signed_client
from openfdi.services.runtime import Runtime
from openfdi.store.tables import CdcMappingRow, CdcTaskRow, TaskRow
from tests.cdc.conftest import Ends, pg_datasource
from tests.factories import unique

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
CLIENTS = 8


def _race(
    server: Any, creds: Any, call: Callable[[httpx.Client, int], httpx.Response]
) -> Counter[tuple[int, str]]:
    """`call` from CLIENTS threads released together, each with its own connection; the
    (status, error code) of each answer."""
    answers: list[tuple[int, str]] = []
    gate = threading.Barrier(CLIENTS)
    lock = threading.Lock()

    def client(i: int) -> None:
        with signed_client(server.url, creds.ak, creds.sk, creds.project_id) as http:
            http.get(f"/v2/{creds.project_id}/fdi/instances/{creds.instance_id}/tasks")  # connect
            gate.wait()
            answer = call(http, i)
        code = "" if answer.status_code == 200 else answer.json().get("error_code", "?")
        with lock:
            answers.append((answer.status_code, code))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == CLIENTS
    return Counter(answers)


def _count(runtime: Runtime, query: Any) -> int:
    with runtime.db.read() as session:
        return int(session.scalar(query) or 0)


def test_racing_inits_creates_and_mappings_have_one_winner_each(
    server, creds, runtime: Runtime, ends: Ends, sdk
) -> None:
    ends.both("CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY)")
    source = pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.src))
    target = pg_datasource(sdk, creds.instance_id, ends.pg.content(ends.dst))
    base = f"/v2/{creds.project_id}/fdi/instances/{creds.instance_id}/multi-tasks"
    task_id = f"race_{unique('t')[-8:]}".lower().replace("-", "_")

    init = {"source_datasource_id": source, "target_datasource_id": target,
            "task_id": task_id, "auto_mapping": False}  # fmt: skip
    inits = _race(server, creds, lambda http, _: http.post(f"{base}/init", json=init))
    assert inits == Counter({(200, ""): 1, (400, "FDI.3033"): CLIENTS - 1}), inits
    assert _count(runtime, select(func.count()).where(CdcTaskRow.task_id == task_id)) == 1

    mapping = {"source_table": "t1"}
    maps = _race(
        server, creds, lambda http, _: http.post(f"{base}/{task_id}/mappings", json=mapping)
    )
    assert maps == Counter({(200, ""): 1, (400, "FDI.3037"): CLIENTS - 1}), maps
    assert _count(runtime, select(func.count()).where(CdcMappingRow.task_id == task_id)) == 1

    def create(http: httpx.Client, i: int) -> httpx.Response:
        body = {"task_name": f"{task_id}_{i}", "task_id": task_id, "task_type": "REALTIME",
                "operation_types": ["INSERT"]}  # fmt: skip
        return http.post(base, json=body)

    creates = _race(server, creds, create)
    assert creates[(200, "")] == 1, creates
    assert all(status == 400 for status, _ in creates.elements() if status != 200), creates
    assert _count(runtime, select(func.count()).where(TaskRow.id == task_id)) == 1
