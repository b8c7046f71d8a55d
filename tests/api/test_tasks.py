"""Common tasks: create, show, update, delete, and list (filters, sorting, pagination)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    CreateCommonTaskRequestBody,
    DeleteTaskRequest,
    ListTasksRequest,
    ShowTaskRequest,
    TaskBasicRequestBody,
    UpdateTaskRequest,
)

from openfdi.domain.ids import new_hex_id
from openfdi.services import identity
from openfdi.store.tables import TaskRow
from tests.factories import (
    SQLITE_DETAIL,
    create_plan,
    create_sqlite_datasource,
    create_task,
    unique,
)

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
both_backends = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def error_of(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error_code"]


def make_datasource(signed: httpx.Client, base_path: str, app_id: str | None = None) -> str:
    body: dict[str, Any] = {
        "datasource_name": unique("ds"),
        "datasource_type": "SQLITE",
        "content": {"database_name": "/tmp/tasks.db"},
    }
    if app_id:
        body["app_id"] = app_id
    reply = signed.post(f"{base_path}/datasources", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["datasource_id"])


def task_body(source: str, target: str | None = None, **task: Any) -> dict[str, Any]:
    detail = task.pop("task_detail", SQLITE_DETAIL)
    fields = {
        "task_name": unique("task"),
        "task_type": "REALTIME",
        "source_datasource_id": source,
        "target_datasource_id": target or source,
        **task,
    }
    return {"task": {k: v for k, v in fields.items() if v is not None}, "task_detail": detail}


def make_task(signed: httpx.Client, base_path: str, source: str, **task: Any) -> str:
    reply = signed.post(f"{base_path}/tasks", json=task_body(source, **task))
    assert reply.status_code == 200, reply.text
    return str(reply.json()["task"]["task_id"])


def batch(signed: httpx.Client, base_path: str, action: str, *task_ids: str) -> None:
    reply = signed.post(
        f"{base_path}/batch-operation/tasks",
        json={"action_id": action, "list": [{"task_id": t} for t in task_ids]},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["failure_count"] == 0, reply.text


def listed(signed: httpx.Client, base_path: str, **params: Any) -> list[str]:
    reply = signed.get(f"{base_path}/tasks", params={"limit": 100, **params})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["size"] == len(body["entities"])
    return [e["task_id"] for e in body["entities"]]


def sdk_body(source: str, name: str, **task: Any) -> CreateCommonTaskRequestBody:
    return CreateCommonTaskRequestBody(
        task=TaskBasicRequestBody(
            task_name=name,
            task_type=task.pop("task_type", "REALTIME"),
            source_datasource_id=source,
            target_datasource_id=source,
            **task,
        ),
        task_detail=SQLITE_DETAIL,
    )


# --- create and show


@both_backends
def test_create_and_show_through_the_sdk(sdk, signed, creds, base_path) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id, "/tmp/show.db")
    name = unique("Show")
    task_id = create_task(sdk, creds.instance_id, "TIMING", source=source, name=name)

    shown = sdk.show_task(ShowTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    assert shown.status_code == 200
    t = shown.task
    assert (t.task_id, t.task_name, t.task_type, t.status) == (task_id, name, "timing", "stop")
    assert (t.project_id, t.source_datasource_id, t.target_datasource_id) == (
        creds.project_id,
        source,
        source,
    )
    assert isinstance(t.created_date, int)
    assert t.last_modified_date >= t.created_date
    assert shown.task_detail == SQLITE_DETAIL  # echoed unchanged

    raw = signed.get(f"{base_path}/tasks/{task_id}").json()
    assert raw["task"]["status"] == "stop"
    assert raw["task"]["task_type"] == "timing"
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)


def test_show_status_follows_start_and_stop(sdk, signed, creds, base_path) -> None:
    task_id = create_task(sdk, creds.instance_id, "REALTIME")
    batch(signed, base_path, "start", task_id)
    assert signed.get(f"{base_path}/tasks/{task_id}").json()["task"]["status"] == "running"
    batch(signed, base_path, "stop", task_id)
    shown = sdk.show_task(ShowTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    assert (shown.task.task_type, shown.task.status) == ("realtime", "stop")


def test_create_validation_names_the_field(signed, base_path) -> None:
    source = make_datasource(signed, base_path)
    missing = uuid.uuid4().hex
    cases: list[tuple[str, dict[str, Any]]] = [
        ("task_name", {"task_name": "ab"}),
        ("task_name", {"task_name": "-starts-with-dash"}),
        ("task_name", {"task_name": "has space"}),
        ("task_name", {"task_name": "x" * 101}),
        ("task_name", {"task_name": ""}),
        ("task_type", {"task_type": "BATCH"}),
        ("task_type", {"task_type": ""}),
        ("description", {"description": "d" * 1025}),
        ("task_tag", {"task_tag": "abc"}),
        ("task_tag", {"task_tag": "bad tag!"}),
        ("task_tag", {"task_tag": "t" * 65}),
        ("task_detail", {"task_detail": "not json"}),
        ("task_detail", {"task_detail": "[1, 2]"}),
        ("source_datasource_id", {"source_datasource_id": missing}),
        ("target_datasource_id", {"target_datasource_id": missing}),
    ]
    for field, change in cases:
        reply = signed.post(f"{base_path}/tasks", json=task_body(source, **change))
        assert error_of(reply) == (400, "FDI.3033"), (field, reply.text)
        assert f"[{field}]" in reply.json()["error_msg"], (field, reply.text)
    assert listed(signed, base_path) == []


def test_missing_fields_are_fdi_3002_naming_the_field(signed, base_path) -> None:
    source = make_datasource(signed, base_path)
    good = task_body(source)
    for field in ("task_name", "task_type", "source_datasource_id", "target_datasource_id"):
        body = {"task": {k: v for k, v in good["task"].items() if k != field}, "task_detail": "{}"}
        reply = signed.post(f"{base_path}/tasks", json=body)
        assert error_of(reply) == (400, "FDI.3002"), field
        assert field in reply.json()["error_msg"]
    for body in ({"task": good["task"]}, {"task_detail": SQLITE_DETAIL}, [], "x"):
        reply = signed.post(f"{base_path}/tasks", json=body)
        assert error_of(reply) == (400, "FDI.3002"), body
    reply = signed.post(
        f"{base_path}/tasks", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert error_of(reply) == (400, "FDI.3002")


def test_datasource_of_another_instance_is_unknown(sdk, signed, runtime, creds, base_path):
    other = identity.create_instance(runtime, creds.project_id, "other")
    foreign = create_sqlite_datasource(sdk, other)
    reply = signed.post(f"{base_path}/tasks", json=task_body(foreign))
    assert error_of(reply) == (400, "FDI.3033")
    assert "[source_datasource_id]" in reply.json()["error_msg"]


def test_duplicate_name_is_refused(sdk, signed, runtime, creds, base_path) -> None:
    source = make_datasource(signed, base_path)
    name = unique("dup")
    make_task(signed, base_path, source, task_name=name)
    reply = signed.post(f"{base_path}/tasks", json=task_body(source, task_name=name))
    assert error_of(reply) == (400, "FDI.3033")
    assert "[task_name]" in reply.json()["error_msg"]
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.create_common_task(
            _create_request(creds.instance_id, sdk_body(source, name)),
        )
    assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3033")
    # The same name in another instance is another task.
    other = identity.create_instance(runtime, creds.project_id, "other")
    create_task(sdk, other, name=name)


def _create_request(instance_id: str, body: CreateCommonTaskRequestBody) -> Any:
    from huaweicloudsdkroma.v2 import CreateCommonTaskRequest

    return CreateCommonTaskRequest(instance_id=instance_id, body=body)


# --- update


@both_backends
def test_update_through_the_sdk_refused_while_started(sdk, signed, creds, base_path) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    task_id = create_task(sdk, creds.instance_id, "REALTIME", source=source)
    before = sdk.show_task(ShowTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    new_name = unique("renamed")
    updated = sdk.update_task(
        UpdateTaskRequest(
            instance_id=creds.instance_id,
            task_id=task_id,
            body=sdk_body(source, new_name, description="changed", task_tag="tag_one"),
        )
    )
    assert updated.status_code == 200
    assert (updated.task.task_name, updated.task.description, updated.task.task_tag) == (
        new_name,
        "changed",
        "tag_one",
    )
    assert updated.task.created_date == before.task.created_date
    assert updated.task.last_modified_date >= before.task.last_modified_date

    batch(signed, base_path, "start", task_id)
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.update_task(
            UpdateTaskRequest(
                instance_id=creds.instance_id,
                task_id=task_id,
                body=sdk_body(source, unique("refused")),
            )
        )
    assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3023")
    shown = sdk.show_task(ShowTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    assert shown.task.task_name == new_name

    batch(signed, base_path, "stop", task_id)
    again = sdk.update_task(
        UpdateTaskRequest(
            instance_id=creds.instance_id, task_id=task_id, body=sdk_body(source, unique("ok"))
        )
    )
    assert again.status_code == 200


def test_update_validates_and_finds(signed, base_path) -> None:
    source = make_datasource(signed, base_path)
    task_id = make_task(signed, base_path, source)
    taken = unique("taken")
    make_task(signed, base_path, source, task_name=taken)
    path = f"{base_path}/tasks/{task_id}"
    reply = signed.put(path, json=task_body(source, task_detail="{not json"))
    assert error_of(reply) == (400, "FDI.3033")
    assert "[task_detail]" in reply.json()["error_msg"]
    reply = signed.put(path, json=task_body(source, task_name=taken))
    assert error_of(reply) == (400, "FDI.3033")
    assert "[task_name]" in reply.json()["error_msg"]
    reply = signed.put(path, json=task_body(source, target_datasource_id=uuid.uuid4().hex))
    assert "[target_datasource_id]" in reply.json()["error_msg"]
    reply = signed.put(f"{base_path}/tasks/{uuid.uuid4().hex}", json=task_body(source))
    assert error_of(reply) == (404, "FDI.3081")


def test_changing_a_timing_task_to_realtime_drops_its_plan(sdk, signed, creds, base_path):
    source = create_sqlite_datasource(sdk, creds.instance_id)
    task_id = create_task(sdk, creds.instance_id, "TIMING", source=source)
    create_plan(sdk, creds.instance_id, task_id)
    reply = signed.put(f"{base_path}/tasks/{task_id}", json=task_body(source))
    assert reply.status_code == 200, reply.text
    assert reply.json()["task"]["task_type"] == "realtime"
    assert error_of(signed.get(f"{base_path}/tasks/{task_id}/dispatches")) == (404, "FDI.3083")


# --- delete


def test_delete_through_the_sdk(sdk, signed, creds, base_path) -> None:
    task_id = create_task(sdk, creds.instance_id, "TIMING")
    create_plan(sdk, creds.instance_id, task_id)
    batch(signed, base_path, "start", task_id)

    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.delete_task(DeleteTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3028")

    batch(signed, base_path, "stop", task_id)
    deleted = sdk.delete_task(DeleteTaskRequest(instance_id=creds.instance_id, task_id=task_id))
    assert deleted.status_code == 204

    for _ in range(2):
        with pytest.raises(exceptions.ClientRequestException) as caught:
            sdk.show_task(ShowTaskRequest(instance_id=creds.instance_id, task_id=task_id))
        assert (caught.value.status_code, caught.value.error_code) == (404, "FDI.3081")
    assert error_of(signed.delete(f"{base_path}/tasks/{task_id}")) == (404, "FDI.3081")
    assert listed(signed, base_path) == []
    raw = signed.delete(f"{base_path}/tasks/{create_task(sdk, creds.instance_id)}")
    assert (raw.status_code, raw.content) == (204, b"")
    assert len(raw.headers["X-Request-Id"]) == 32


def test_tasks_of_another_instance_do_not_exist(sdk, signed, runtime, creds, base_path):
    other = identity.create_instance(runtime, creds.project_id, "other")
    foreign = create_task(sdk, other)
    path = f"{base_path}/tasks/{foreign}"
    assert error_of(signed.get(path)) == (404, "FDI.3081")
    assert error_of(signed.delete(path)) == (404, "FDI.3081")
    assert listed(signed, base_path) == []
    assert listed(signed, f"/v2/{creds.project_id}/fdi/instances/{other}") == [foreign]


# --- list


@both_backends
def test_list_filters(signed, base_path) -> None:
    app_a, app_b = str(uuid.uuid4()), str(uuid.uuid4())
    ds_a = make_datasource(signed, base_path, app_a)
    ds_b = make_datasource(signed, base_path, app_b)
    r = uuid.uuid4().hex[:6]
    t1 = make_task(signed, base_path, ds_a, task_name=f"Orders-sync-{r}", task_tag="tag_alpha")
    t2 = make_task(
        signed,
        base_path,
        ds_a,
        target_datasource_id=ds_b,
        task_name=f"orders-load-{r}",
        task_type="TIMING",
    )
    t3 = make_task(signed, base_path, ds_b, task_name=f"Customers-{r}", task_type="TIMING")
    t4 = make_task(
        signed, base_path, ds_b, target_datasource_id=ds_a, task_name=f"misc_{r}", task_tag="tg_b"
    )
    signed.post(
        f"{base_path}/tasks/{t2}/dispatches",
        json={"start_datetime": 1767225600000, "period": "DAY", "dispatch_interval": 1},
    ).raise_for_status()
    batch(signed, base_path, "start", t2, t4)

    def ids(**params: Any) -> set[str]:
        return set(listed(signed, base_path, **params))

    assert ids() == {t1, t2, t3, t4}
    assert ids(task_id=t3) == {t3}
    assert ids(task_id=uuid.uuid4().hex) == set()
    assert ids(name="rders-") == {t1, t2}
    assert ids(name=f"Customers-{r}") == {t3}
    assert ids(task_name="rders-s") == {t1}
    assert ids(taks_name="-load-") == {t2}
    assert ids(name="%") == set()  # LIKE wildcards are literal
    assert ids(name="_") == {t4}
    assert ids(status=1) == {t2, t4}
    assert ids(status=0) == {t1, t3}
    assert ids(task_type="timing") == {t2, t3}
    assert ids(task_type="realtime") == {t1, t4}
    assert ids(source_datasource_id=ds_a) == {t1, t2}
    assert ids(target_datasource_id=ds_a) == {t1, t4}
    assert ids(datasource_id=ds_a) == {t1, t2, t4}
    assert ids(datasource_id=ds_b) == {t2, t3, t4}
    assert ids(execute_status="WAITING") == {t2}
    assert ids(execute_status="UNSTARTED") == {t1, t3, t4}
    assert ids(execute_status="RUNNING") == set()
    assert ids(task_tag="tag_alpha") == {t1}
    assert ids(source_app_id=app_a) == {t1, t2}
    assert ids(target_app_id=app_b) == {t2, t3}
    assert ids(status=1, task_type="realtime") == {t4}
    assert ids(task_mode="ignored") == {t1, t2, t3, t4}

    reply = signed.get(f"{base_path}/tasks", params={"task_id": t2})
    (entity,) = reply.json()["entities"]
    assert entity["task_type"] == "TIMING"
    assert (entity["status"], entity["execute_status"]) == (1, "WAITING")
    assert entity["source_app_id"] == app_a
    assert entity["target_app_id"] == app_b
    assert reply.json()["total"] == 1


def test_list_bad_parameters(signed, base_path) -> None:
    for params, expected in (
        ({"limit": "abc"}, "FDI.3002"),
        ({"offset": "x"}, "FDI.3002"),
        ({"status": "running"}, "FDI.3002"),
        ({"limit": 0}, "FDI.3002"),
        ({"status": 2}, "FDI.3033"),
        ({"task_type": "batch"}, "FDI.3033"),
        ({"sort_field": "NAME"}, "FDI.3033"),
        ({"sort_type": "UP"}, "FDI.3033"),
        ({"execute_status": "DONE"}, "FDI.3033"),
    ):
        reply = signed.get(f"{base_path}/tasks", params=params)
        assert error_of(reply) == (400, expected), params
        name = next(iter(params))
        assert name in reply.json()["error_msg"], reply.text


def test_list_sorting(signed, base_path) -> None:
    source = make_datasource(signed, base_path)
    made = []
    for _ in range(3):
        made.append(make_task(signed, base_path, source))
        time.sleep(0.005)  # distinct created_date values
    first, middle, last = made
    batch(signed, base_path, "start", middle)

    assert listed(signed, base_path) == [last, middle, first]  # CREATED_DATE DESC by default
    assert listed(signed, base_path, sort_field="CREATED_DATE", sort_type="DESC") == [
        last,
        middle,
        first,
    ]
    assert listed(signed, base_path, sort_field="CREATED_DATE", sort_type="ASC") == made
    assert listed(signed, base_path, sort_type="asc") == made
    assert listed(signed, base_path, sort_field="STATUS", sort_type="DESC")[0] == middle
    assert listed(signed, base_path, sort_field="STATUS", sort_type="ASC")[-1] == middle


def test_list_pagination(signed, base_path) -> None:
    source = make_datasource(signed, base_path)
    for _ in range(12):
        make_task(signed, base_path, source)
        time.sleep(0.002)
    everything = listed(signed, base_path, limit=100)
    assert len(everything) == 12

    def page(**params: Any) -> dict[str, Any]:
        reply = signed.get(f"{base_path}/tasks", params=params)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    default = page()
    assert (default["total"], default["size"]) == (12, 10)  # limit defaults to 10
    assert [e["task_id"] for e in default["entities"]] == everything[:10]
    tail = page(offset=10)  # offset counts records, not pages
    assert (tail["total"], tail["size"]) == (12, 2)
    assert [e["task_id"] for e in tail["entities"]] == everything[10:]
    assert [e["task_id"] for e in page(offset=3, limit=3)["entities"]] == everything[3:6]
    assert page(offset=-3) == {**default}  # negative offset is 0
    assert page(limit=5000)["size"] == 12
    assert page(offset=50) == {"total": 12, "size": 0, "entities": []}
    for huge in (2**31, 2**63, 2**70):  # past the end, never a 500
        assert page(offset=huge) == {"total": 12, "size": 0, "entities": []}
    assert page(limit=2**70)["size"] == 12


def test_limit_above_999_is_999(signed, runtime, creds, base_path) -> None:
    source = make_datasource(signed, base_path)
    now = runtime.clock_ms()
    with runtime.db.write() as session:
        session.add_all(
            TaskRow(
                id=new_hex_id(),
                project_id=creds.project_id,
                instance_id=creds.instance_id,
                name=f"bulk-{i:04d}",
                task_type="REALTIME",
                source_datasource_id=source,
                target_datasource_id=source,
                task_detail=SQLITE_DETAIL,
                status=0,
                version=1,
                created_at=now + i,
                updated_at=now + i,
            )
            for i in range(1000)
        )
    for limit in (5000, 1000, 999):
        body = signed.get(f"{base_path}/tasks", params={"limit": limit}).json()
        assert (body["total"], body["size"]) == (1000, 999), limit
    assert signed.get(f"{base_path}/tasks", params={"limit": 998}).json()["size"] == 998


def test_sdk_list_tasks_parses_created_date(sdk, signed, creds, base_path) -> None:
    task_id = create_task(sdk, creds.instance_id, "REALTIME", name=unique("Listed"))
    reply = sdk.list_tasks(ListTasksRequest(instance_id=creds.instance_id, limit=10, offset=0))
    assert (reply.status_code, reply.total, reply.size) == (200, 1, 1)
    (entity,) = reply.entities
    assert (entity.task_id, entity.task_type, entity.status) == (task_id, "REALTIME", 0)
    assert entity.execute_status == "UNSTARTED"
    assert entity.source_instance_id == creds.instance_id
    assert entity.enterprise_project_id == "0"

    raw = signed.get(f"{base_path}/tasks").json()["entities"][0]
    assert ISO_UTC.match(raw["created_date"]), raw["created_date"]
    shown = signed.get(f"{base_path}/tasks/{task_id}").json()["task"]
    seconds = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(shown["created_date"] // 1000))
    assert raw["created_date"] == seconds
    assert isinstance(raw["last_modified_time"], int)
    assert raw["status"] == 0

    filtered = sdk.list_tasks(
        ListTasksRequest(instance_id=creds.instance_id, status=0, task_type="realtime")
    )
    assert [t.task_id for t in filtered.entities] == [task_id]
