"""Every rule of fdi-api.md H.1 (batch start/stop), one test each, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import BatchStartOrStopTasksRequest, OperateTasksBean, TaskBean

from openfdi.client import signed_client
from openfdi.services import identity
from tests.factories import SQLITE_DETAIL, create_plan, create_task

# The rules that touch task state run on both metadata databases; the checks that refuse a
# request before any task is read (H.1.1-H.1.3 shapes) run on the default SQLite only.
both_backends = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)

PLAN_MISSING = "One or more scheduled tasks are not configured with scheduled plans."


def post_batch(
    client: httpx.Client, base_path: str, body: object, **headers: str
) -> httpx.Response:
    return client.post(f"{base_path}/batch-operation/tasks", json=body, headers=headers)


def post_raw(client: httpx.Client, base_path: str, content: bytes) -> httpx.Response:
    return client.post(
        f"{base_path}/batch-operation/tasks",
        content=content,
        headers={"Content-Type": "application/json;charset=utf-8"},
    )


def error_of(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error_code"]


def entries(*task_ids: str | None) -> list[dict[str, str]]:
    return [{} if t is None else {"task_id": t} for t in task_ids]


def statuses(signed: httpx.Client, base_path: str, *task_ids: str) -> dict[str, int]:
    found = {}
    for task_id in task_ids:
        reply = signed.get(f"{base_path}/tasks", params={"task_id": task_id})
        assert reply.status_code == 200, reply.text
        (entity,) = reply.json()["entities"]
        found[task_id] = entity["status"]
    return found


# --- H.1.1 authentication comes first

BAD_BODIES = {
    "bad-json": b"{not json",
    "not-object": b"[1, 2]",
    "no-action": b'{"list": [{"task_id": "x"}]}',
    "empty-list": b'{"action_id": "start", "list": []}',
    "eleven": b'{"action_id": "start", "list": [' + b",".join([b'{"task_id":"x"}'] * 11) + b"]}",
}


def test_no_or_wrong_credentials_is_401_even_with_a_bad_body(server, anon, creds, base_path):
    valid = b'{"action_id": "start", "list": [{"task_id": "x"}]}'
    with signed_client(server.url, creds.ak, "wrong-secret-key", creds.project_id) as wrong:
        for client in (anon, wrong):
            for name, content in {"valid": valid, **BAD_BODIES}.items():
                reply = post_raw(client, base_path, content)
                assert error_of(reply) == (401, "APIG.0301"), name
                assert reply.json()["error_msg"].startswith(
                    "Incorrect IAM authentication information"
                )


def test_project_and_instance_are_checked_before_the_body(signed, creds) -> None:
    other_project = f"/v2/{uuid.uuid4().hex}/fdi/instances/{creds.instance_id}"
    other_instance = f"/v2/{creds.project_id}/fdi/instances/{uuid.uuid4()}"
    for content in BAD_BODIES.values():
        assert error_of(post_raw(signed, other_project, content)) == (400, "FDI.3039")
        assert error_of(post_raw(signed, other_instance, content)) == (404, "ROMA.00110002")


# --- H.1.2 body shape and action_id


def test_bad_body_or_action_is_fdi_3002(signed, base_path) -> None:
    for content in (
        b"{not json",
        b"",
        b'"start"',
        b"[]",
        b"null",
        b'{"list": [{"task_id": "x"}]}',
        b'{"action_id": null, "list": [{"task_id": "x"}]}',
        b'{"action_id": "", "list": [{"task_id": "x"}]}',
        b'{"action_id": "START", "list": [{"task_id": "x"}]}',
        b'{"action_id": "restart", "list": [{"task_id": "x"}]}',
        b'{"action_id": 1, "list": [{"task_id": "x"}]}',
        b'{"action_id": "pause", "list": []}',  # a bad action wins over an empty list
    ):
        reply = post_raw(signed, base_path, content)
        assert error_of(reply) == (400, "FDI.3002"), content
        assert len(reply.headers["X-Request-Id"]) == 32


# --- H.1.3 list missing, empty, too long


def test_missing_or_empty_list_is_fdi_3150(signed, base_path) -> None:
    for body in (
        {"action_id": "start"},
        {"action_id": "stop", "list": []},
        {"action_id": "start", "list": None},
    ):
        reply = post_batch(signed, base_path, body)
        assert error_of(reply) == (400, "FDI.3150"), body
        assert reply.json()["error_msg"] == "The task list is empty."


@both_backends
def test_eleven_entries_is_fdi_3002_and_ten_is_fine(sdk, signed, creds, base_path) -> None:
    task = create_task(sdk, creds.instance_id)
    ten = post_batch(signed, base_path, {"action_id": "start", "list": entries(*[task] * 10)})
    assert ten.status_code == 200, ten.text
    eleven = post_batch(signed, base_path, {"action_id": "stop", "list": entries(*[task] * 11)})
    assert error_of(eleven) == (400, "FDI.3002")
    assert "10" in eleven.json()["error_msg"]
    assert statuses(signed, base_path, task) == {task: 1}  # the refused stop changed nothing


# --- H.1.4 TIMING without a plan


@both_backends
def test_start_of_unplanned_timing_task_is_404_and_changes_nothing(
    sdk, signed, creds, base_path
) -> None:
    realtime = create_task(sdk, creds.instance_id, "REALTIME")
    planned = create_task(sdk, creds.instance_id, "TIMING")
    create_plan(sdk, creds.instance_id, planned)
    unplanned = create_task(sdk, creds.instance_id, "TIMING")

    reply = post_batch(
        signed,
        base_path,
        {"action_id": "start", "list": entries(realtime, planned, unplanned, "f" * 32)},
    )
    assert error_of(reply) == (404, "FDI.3083")
    assert reply.json()["error_msg"].startswith(PLAN_MISSING)
    assert statuses(signed, base_path, realtime, planned, unplanned) == {
        realtime: 0,
        planned: 0,
        unplanned: 0,
    }
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.batch_start_or_stop_tasks(
            BatchStartOrStopTasksRequest(
                instance_id=creds.instance_id,
                body=OperateTasksBean(action_id="start", list=[TaskBean(task_id=unplanned)]),
            )
        )
    assert (caught.value.status_code, caught.value.error_code) == (404, "FDI.3083")


@both_backends
def test_stop_of_unplanned_timing_task_is_fine(sdk, signed, creds, base_path) -> None:
    unplanned = create_task(sdk, creds.instance_id, "TIMING")
    reply = post_batch(signed, base_path, {"action_id": "stop", "list": entries(unplanned)})
    assert reply.status_code == 200, reply.text
    assert (reply.json()["success_count"], reply.json()["failure_count"]) == (1, 0)


# --- H.1.5 per-entry failures


@both_backends
def test_unknown_task_is_a_per_entry_fdi_3081(sdk, signed, creds, base_path) -> None:
    task = create_task(sdk, creds.instance_id)
    unknown = uuid.uuid4().hex
    reply = post_batch(signed, base_path, {"action_id": "start", "list": entries(task, unknown)})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["success_count"], body["failure_count"]) == (1, 1)
    assert body["failure"] == [
        {"task_id": unknown, "error_code": "FDI.3081", "error_msg": "The task does not exist."}
    ]
    assert statuses(signed, base_path, task) == {task: 1}


@both_backends
def test_task_of_another_instance_does_not_exist(sdk, signed, runtime, creds, base_path) -> None:
    other_instance = identity.create_instance(runtime, creds.project_id, "second")
    # An unplanned TIMING task there must not trigger FDI.3083 here: it does not exist here.
    foreign = create_task(sdk, other_instance, "TIMING")
    reply = post_batch(signed, base_path, {"action_id": "start", "list": entries(foreign)})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["success_count"], body["failure_count"]) == (0, 1)
    assert body["failure"][0]["error_code"] == "FDI.3081"
    assert "task_name" not in body["failure"][0]  # nothing about the foreign task leaks
    other_path = f"/v2/{creds.project_id}/fdi/instances/{other_instance}"
    assert statuses(signed, other_path, foreign) == {foreign: 0}


@both_backends
def test_task_of_another_project_does_not_exist(server, signed, runtime, base_path) -> None:
    project_b = identity.create_project(runtime, "project-b")
    instance_b = identity.create_instance(runtime, project_b)
    ak, sk = identity.create_credential(runtime, project_b)
    path_b = f"/v2/{project_b}/fdi/instances/{instance_b}"
    with signed_client(server.url, ak, sk, project_b) as client_b:
        ds = client_b.post(
            f"{path_b}/datasources",
            json={
                "datasource_name": "b-source",
                "datasource_type": "SQLITE",
                "content": {"database_name": "/tmp/b.db"},
            },
        )
        assert ds.status_code == 201, ds.text
        ds_id = ds.json()["datasource_id"]
        created = client_b.post(
            f"{path_b}/tasks",
            json={
                "task": {
                    "task_name": "b-task",
                    "task_type": "REALTIME",
                    "source_datasource_id": ds_id,
                    "target_datasource_id": ds_id,
                },
                "task_detail": SQLITE_DETAIL,
            },
        )
        assert created.status_code == 200, created.text
        foreign = created.json()["task"]["task_id"]
        reply = post_batch(signed, base_path, {"action_id": "start", "list": entries(foreign)})
        assert reply.status_code == 200, reply.text
        assert reply.json()["failure"][0]["error_code"] == "FDI.3081"
        assert statuses(client_b, path_b, foreign) == {foreign: 0}


@both_backends
def test_empty_task_id_is_a_per_entry_fdi_3149(sdk, signed, creds, base_path) -> None:
    task = create_task(sdk, creds.instance_id)
    for blank in (None, "", "   "):
        listed = entries(task, blank)
        reply = post_batch(signed, base_path, {"action_id": "start", "list": listed})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body["success_count"], body["failure_count"]) == (1, 1)
        (failure,) = body["failure"]
        assert (failure["error_code"], failure["error_msg"]) == (
            "FDI.3149",
            "The task ID is empty.",
        )


@both_backends
def test_duplicates_are_handled_once_and_counts_add_up(sdk, signed, creds, base_path) -> None:
    a = create_task(sdk, creds.instance_id)
    b = create_task(sdk, creds.instance_id)
    unknown = uuid.uuid4().hex
    listed = entries(a, a, b, unknown, unknown, "", None, b, a)
    reply = post_batch(signed, base_path, {"action_id": "start", "list": listed})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    distinct = 4  # a, b, unknown, and the empty id (missing and "" are one entry)
    assert body["success_count"] + body["failure_count"] == distinct
    assert [s["task_id"] for s in body["success"]] == [a, b]
    assert sorted(f["error_code"] for f in body["failure"]) == ["FDI.3081", "FDI.3149"]
    assert body["success_count"] == len(body["success"])
    assert body["failure_count"] == len(body["failure"])


# --- H.1.6 idempotent


@both_backends
def test_start_and_stop_are_idempotent(sdk, signed, creds, base_path) -> None:
    realtime = create_task(sdk, creds.instance_id, "REALTIME")
    timing = create_task(sdk, creds.instance_id, "TIMING")
    create_plan(sdk, creds.instance_id, timing)
    both = entries(realtime, timing)
    for action, expected in (("start", 1), ("start", 1), ("stop", 0), ("stop", 0)):
        reply = post_batch(signed, base_path, {"action_id": action, "list": both})
        assert reply.status_code == 200, reply.text
        assert (reply.json()["success_count"], reply.json()["failure_count"]) == (2, 0)
        assert statuses(signed, base_path, realtime, timing) == {
            realtime: expected,
            timing: expected,
        }
    # A second start changes nothing at all, not even the modification time.
    assert post_batch(signed, base_path, {"action_id": "start", "list": both}).is_success
    before = signed.get(f"{base_path}/tasks", params={"task_id": realtime}).json()["entities"][0]
    again = post_batch(signed, base_path, {"action_id": "start", "list": both})
    assert again.json()["success"][0] == {"task_id": realtime, "task_name": before["task_name"]}
    after = signed.get(f"{base_path}/tasks", params={"task_id": realtime}).json()["entities"][0]
    assert after["last_modified_time"] == before["last_modified_time"]


# --- H.1.7 success entries


@both_backends
def test_success_entries_carry_id_and_name_only(sdk, signed, creds, base_path) -> None:
    name = f"named-{uuid.uuid4().hex[:8]}"
    task = create_task(sdk, creds.instance_id, name=name)
    reply = post_batch(signed, base_path, {"action_id": "start", "list": entries(task)})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "success_count": 1,
        "failure_count": 0,
        "success": [{"task_id": task, "task_name": name}],
        "failure": [],
    }
    # The SDK reads the same answer (here of an idempotent second start).
    reply = sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(action_id="start", list=[TaskBean(task_id=task)]),
        )
    )
    assert (reply.status_code, reply.success_count, reply.failure_count) == (200, 1, 0)
    assert (reply.success[0].task_id, reply.success[0].task_name) == (task, name)
    assert reply.success[0].error_code is None


# --- H.9 Idempotency-Key


@both_backends
def test_idempotency_key_replays_the_first_answer(sdk, signed, creds, base_path) -> None:
    task = create_task(sdk, creds.instance_id)
    body = {"action_id": "start", "list": entries(task)}
    first = post_batch(signed, base_path, body, **{"Idempotency-Key": "key-1"})
    assert first.status_code == 200, first.text
    assert post_batch(signed, base_path, {"action_id": "stop", "list": entries(task)}).is_success
    replay = post_batch(signed, base_path, body, **{"Idempotency-Key": "key-1"})
    assert replay.status_code == 200
    assert replay.json() == first.json()
    # The replay answered from memory: the stop in between still stands.
    assert statuses(signed, base_path, task) == {task: 0}
    # Without the key the same body acts again.
    assert post_batch(signed, base_path, body).is_success
    assert statuses(signed, base_path, task) == {task: 1}


@both_backends
def test_idempotency_key_with_another_body_is_fdi_3002(sdk, signed, creds, base_path) -> None:
    task = create_task(sdk, creds.instance_id)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = post_batch(signed, base_path, {"action_id": "stop", "list": entries(task)}, **key)
    assert first.status_code == 200, first.text
    reply = post_batch(signed, base_path, {"action_id": "start", "list": entries(task)}, **key)
    assert error_of(reply) == (400, "FDI.3002")
    assert statuses(signed, base_path, task) == {task: 0}


@both_backends
def test_refused_batch_does_not_burn_the_idempotency_key(sdk, signed, creds, base_path) -> None:
    timing = create_task(sdk, creds.instance_id, "TIMING")
    key = {"Idempotency-Key": "plan-later"}
    body = {"action_id": "start", "list": entries(timing)}
    assert error_of(post_batch(signed, base_path, body, **key)) == (404, "FDI.3083")
    create_plan(sdk, creds.instance_id, timing)
    assert post_batch(signed, base_path, body, **key).status_code == 200
    assert statuses(signed, base_path, timing) == {timing: 1}
