"""Fixtures of the console tests: a live server with the demo data, and a signed-in client.

The page handlers are driven over HTTP on loopback (httpx): starlette's httpx.Client warns that
its httpx support is deprecated, and warnings are errors in this suite."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from openfdi.domain.scope import Scope
from openfdi.services import datasources, demo, dispatches, tasks
from openfdi.services.runtime import Runtime
from openfdi.wire.dispatches import TaskDispatchRequest
from openfdi.wire.tasks import CreateCommonTaskRequest, TaskBasicRequest
from tests.conftest import INSTANCE_ID, PASSWORD, PROJECT_ID, USER, LiveServer

SCOPE = Scope(PROJECT_ID, INSTANCE_ID)
BASE = f"/console/{INSTANCE_ID}"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: httpx.Client, user: str = USER, password: str = PASSWORD) -> str:
    """Sign in through the form; return the session's CSRF token."""
    page = client.get("/console/login")
    reply = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": user, "password": password},
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    return csrf_of(client.get(f"{BASE}/").text)


def make_tasks(
    rt: Runtime, count: int, prefix: str = "bulk", kind: str = "REALTIME", *, planned: bool = False
) -> list[str]:
    """Tasks from the demo shop; a planned TIMING task's plan starts in 2030 (never fires)."""
    shop = next(
        d
        for d in datasources.list_datasources(
            rt, SCOPE, offset=0, limit=10, datasource_type=None, name=None, app_id=None,
            sort_type=None,
        ).entities
        if d.datasource_name == "demo-shop"
    )  # fmt: skip
    detail = {
        "sourceSelectedDatasource": {"table": "orders", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "t"},
    }
    ids = []
    for i in range(count):
        req = CreateCommonTaskRequest(
            task=TaskBasicRequest(
                task_name=f"{prefix}-{i:02d}",
                task_type=kind,
                source_datasource_id=shop.datasource_id,
                target_datasource_id=shop.datasource_id,
            ),
            task_detail=json.dumps(detail),
        )
        task_id = tasks.create_common_task(rt, SCOPE, req).task.task_id
        if planned:
            plan = TaskDispatchRequest(start_datetime="2030-01-01T00:00:00Z", period="DAY",
                                       dispatch_interval=1)  # fmt: skip
            dispatches.create_dispatches(rt, SCOPE, task_id, plan)
        ids.append(task_id)
    return ids


@pytest.fixture
def demo_runtime(runtime: Runtime) -> Runtime:
    demo.install_demo(runtime, SCOPE)
    return runtime


@pytest.fixture
def client(demo_runtime: Runtime) -> Iterator[httpx.Client]:
    with LiveServer(demo_runtime) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        yield c


@pytest.fixture
def csrf(client: httpx.Client) -> str:
    return sign_in(client)
