"""A data source deleted while tasks that use it are being created, on SQLite and PostgreSQL
metadata: either the delete wins (the creates are refused: the data source is gone) or a create
wins (the delete is refused: a task uses it), never a 500, and never a task left pointing at a
data source that is gone."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openfdi.client import signed_client
from openfdi.services.runtime import Runtime
from openfdi.store.tables import DatasourceRow, TaskRow
from tests.factories import create_sqlite_datasource, unique

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
ROUNDS = 15
CREATORS = 4


def test_deleting_a_data_source_while_tasks_are_created_with_it(
    server: Any, creds: Any, sdk: Any, runtime: Runtime, tmp_path: Any
) -> None:
    base = f"/v2/{creds.project_id}/fdi/instances/{creds.instance_id}"
    statuses: list[int] = []
    lock = threading.Lock()
    for _ in range(ROUNDS):
        datasource = create_sqlite_datasource(sdk, creds.instance_id, str(tmp_path / "x.db"))
        gate = threading.Barrier(CREATORS + 1)

        def create(ds: str = datasource, gate: threading.Barrier = gate) -> None:
            body = {"task": {"task_name": unique("race"), "task_type": "TIMING",
                             "source_datasource_id": ds, "target_datasource_id": ds},
                    "task_detail": '{"sourceSelectedDatasource": {"table": "a"}, '
                                   '"targetSelectedDatasource": {"table": "b"}}'}  # fmt: skip
            with signed_client(server.url, creds.ak, creds.sk, creds.project_id) as http:
                gate.wait()
                reply = http.post(f"{base}/tasks", json=body)
            with lock:
                statuses.append(reply.status_code)

        def delete(ds: str = datasource, gate: threading.Barrier = gate) -> None:
            with signed_client(server.url, creds.ak, creds.sk, creds.project_id) as http:
                gate.wait()
                reply: httpx.Response = http.delete(f"{base}/datasources/{ds}")
            with lock:
                statuses.append(reply.status_code)

        threads = [threading.Thread(target=create) for _ in range(CREATORS)]
        threads.append(threading.Thread(target=delete))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert all(s < 500 for s in statuses), sorted(statuses)
    with runtime.db.read() as session:
        datasources = set(session.scalars(select(DatasourceRow.id)))
        used = {*session.scalars(select(TaskRow.source_datasource_id))}
    assert used <= datasources
