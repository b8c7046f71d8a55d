"""Statistics (`GET …/statistics/tasks`) and the monitor overview (`GET …/task-monitors`)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from huaweicloudsdkroma.v2 import CountTasksRequest, ListMonitorInfosRequest

from tests.factories import create_plan, create_sqlite_datasource, create_task, unique

ZERO = {
    "running_tasks_count": 0,
    "abnormal_tasks_count": 0,
    "terminated_tasks_count": 0,
    "completed_tasks_count": 0,
}


def error_of(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error_code"]


def batch(signed: httpx.Client, base_path: str, action: str, *task_ids: str) -> None:
    reply = signed.post(
        f"{base_path}/batch-operation/tasks",
        json={"action_id": action, "list": [{"task_id": t} for t in task_ids]},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["failure_count"] == 0, reply.text


def monitors(signed: httpx.Client, base_path: str, **params: Any) -> dict[str, Any]:
    reply = signed.get(f"{base_path}/task-monitors", params=params)
    assert reply.status_code == 200, reply.text
    body = dict(reply.json())
    assert body["size"] == len(body["entities"])
    return body


def names(body: dict[str, Any]) -> set[str]:
    return {e["task_name"] for e in body["entities"]}


# --- statistics


def test_statistics_follow_start_and_stop(sdk, signed, creds, base_path) -> None:
    def counts() -> tuple[dict[str, int], dict[str, int]]:
        reply = sdk.count_tasks(CountTasksRequest(instance_id=creds.instance_id))
        assert reply.status_code == 200
        return reply.common_task_details.to_dict(), reply.cdc_task_details.to_dict()

    assert counts() == (ZERO, ZERO)
    source = create_sqlite_datasource(sdk, creds.instance_id)
    r1 = create_task(sdk, creds.instance_id, "REALTIME", source=source)
    r2 = create_task(sdk, creds.instance_id, "REALTIME", source=source)
    timing = create_task(sdk, creds.instance_id, "TIMING", source=source)
    create_plan(sdk, creds.instance_id, timing)
    assert counts() == ({**ZERO, "terminated_tasks_count": 3}, ZERO)

    batch(signed, base_path, "start", r1, timing)
    assert counts() == ({**ZERO, "running_tasks_count": 2, "terminated_tasks_count": 1}, ZERO)
    batch(signed, base_path, "start", r2)
    assert counts() == ({**ZERO, "running_tasks_count": 3}, ZERO)
    batch(signed, base_path, "stop", r1, r2, timing)
    assert counts() == ({**ZERO, "terminated_tasks_count": 3}, ZERO)

    raw = signed.get(f"{base_path}/statistics/tasks").json()
    assert set(raw) == {"common_task_details", "cdc_task_details"}
    assert all(isinstance(v, int) for v in raw["common_task_details"].values())


# --- task-monitors


def test_offset_is_a_one_based_page(sdk, signed, creds, base_path) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    for _ in range(5):
        create_task(sdk, creds.instance_id, source=source)
        time.sleep(0.003)
    everything = [e["task_id"] for e in monitors(signed, base_path, limit=50)["entities"]]
    assert len(everything) == 5

    def page(offset: int, limit: int = 2) -> list[str]:
        body = monitors(signed, base_path, offset=offset, limit=limit)
        assert body["total"] == 5
        return [e["task_id"] for e in body["entities"]]

    assert page(1) == everything[0:2]
    assert page(2) == everything[2:4]
    assert page(3) == everything[4:5]
    assert page(4) == []
    assert page(2**62) == []  # far past the end, never a 500
    assert page(2**70, limit=2**70) == []
    assert [e["task_id"] for e in monitors(signed, base_path)["entities"]] == everything
    assert monitors(signed, base_path, limit=5000)["size"] == 5

    for params in ({"offset": 0}, {"offset": -1}, {"limit": 0}, {"offset": "one"}):
        reply = signed.get(f"{base_path}/task-monitors", params=params)
        assert error_of(reply) == (400, "FDI.3002"), params


def test_task_name_filter_is_case_sensitive(sdk, signed, creds, base_path) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    upper = unique("Alpha")
    lower = unique("alpha")
    create_task(sdk, creds.instance_id, source=source, name=upper)
    create_task(sdk, creds.instance_id, source=source, name=lower)
    create_task(sdk, creds.instance_id, source=source, name=unique("beta"))

    assert names(monitors(signed, base_path, task_name="Alpha")) == {upper}
    assert names(monitors(signed, base_path, task_name="alpha")) == {lower}
    assert names(monitors(signed, base_path, task_name="ALPHA")) == set()
    assert names(monitors(signed, base_path, task_name="lpha-")) == {upper, lower}
    assert monitors(signed, base_path, task_name="Alpha")["total"] == 1
    assert names(monitors(signed, base_path, task_name="%")) == set()


def test_execute_status_filter(sdk, signed, creds, base_path) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    waiting = create_task(sdk, creds.instance_id, "TIMING", source=source)
    create_plan(sdk, creds.instance_id, waiting)
    idle = create_task(sdk, creds.instance_id, "TIMING", source=source)
    realtime = create_task(sdk, creds.instance_id, "REALTIME", source=source)
    batch(signed, base_path, "start", waiting, realtime)

    def ids(status: str) -> set[str]:
        return {
            e["task_id"] for e in monitors(signed, base_path, execute_status=status)["entities"]
        }

    assert ids("WAITING") == {waiting}
    assert ids("UNSTARTED") == {idle, realtime}
    assert ids("RUNNING") == set()
    assert ids("ERROR") == set()
    reply = signed.get(f"{base_path}/task-monitors", params={"execute_status": "BUSY"})
    assert error_of(reply) == (400, "FDI.3033")
    assert "[execute_status]" in reply.json()["error_msg"]


def test_schedule_fields_of_timing_tasks(sdk, signed, creds, base_path) -> None:
    source = create_sqlite_datasource(sdk, creds.instance_id)
    periodic = create_task(sdk, creds.instance_id, "TIMING", source=source)
    create_plan(sdk, creds.instance_id, periodic, period="DAY", dispatch_interval=2)
    cron = create_task(sdk, creds.instance_id, "TIMING", source=source)
    create_plan(sdk, creds.instance_id, cron, period=None, use_quartz_cron=True, cron="0 0 6 * * ?")
    realtime = create_task(sdk, creds.instance_id, "REALTIME", source=source)
    batch(signed, base_path, "start", periodic)

    entities = {e["task_id"]: e for e in monitors(signed, base_path)["entities"]}
    p = entities[periodic]
    assert (p["task_type"], p["status"], p["execute_status"]) == ("TIMING", 1, "WAITING")
    assert (p["period"], p["dispatch_interval"], p["use_quartz_cron"]) == ("DAY", 2, False)
    assert len(p["next_fire_times"]) == 3  # armed: the next fires are shown
    c = entities[cron]
    assert (c["use_quartz_cron"], c["cron"], c["status"]) == (True, "0 0 6 * * ?", 0)
    assert c["next_fire_times"] is None  # not armed
    r = entities[realtime]
    assert r["task_type"] == "REALTIME"
    assert (r["period"], r["cron"], r["dispatch_interval"]) == (None, None, None)
    for e in entities.values():
        assert e["source_instance_id"] == e["target_instance_id"] == creds.instance_id

    reply = sdk.list_monitor_infos(
        ListMonitorInfosRequest(instance_id=creds.instance_id, offset=1, limit=10)
    )
    assert (reply.status_code, reply.total, reply.size) == (200, 3, 3)
    by_id = {e.task_id: e for e in reply.entities}
    assert (by_id[periodic].period, by_id[periodic].dispatch_interval) == ("DAY", 2)
    assert by_id[cron].cron == "0 0 6 * * ?"
    assert by_id[realtime].execute_status == "UNSTARTED"
