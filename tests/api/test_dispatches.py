"""Scheduled plans ("dispatches"): create, show, update, validation, next fire times."""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    CreateDispatchesRequest,
    ShowDispatchesRequest,
    TaskDispatch,
    UpdateDispatchesRequest,
)

from tests.factories import create_plan, create_task

START_2026 = 1767225600000  # 2026-01-01T00:00:00Z
HOUR_MS = 3600 * 1000
both_backends = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def error_of(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, reply.json()["error_code"]


def plan_path(base_path: str, task_id: str) -> str:
    return f"{base_path}/tasks/{task_id}/dispatches"


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@both_backends
def test_create_show_update_through_the_sdk(sdk, creds) -> None:
    task_id = create_task(sdk, creds.instance_id, "TIMING")
    created = sdk.create_dispatches(
        CreateDispatchesRequest(
            instance_id=creds.instance_id,
            task_id=task_id,
            body=TaskDispatch(
                start_datetime=START_2026, period="HOUR", dispatch_interval=2, remark="every-2h"
            ),
        )
    )
    assert created.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", created.dispatch_id)
    assert (created.task_id, created.start_datetime) == (task_id, START_2026)
    assert (created.period, created.dispatch_interval, created.remark) == ("HOUR", 2, "every-2h")
    assert created.use_quartz_cron is False
    assert isinstance(created.created_date, int)

    shown = sdk.show_dispatches(
        ShowDispatchesRequest(instance_id=creds.instance_id, task_id=task_id)
    )
    assert (shown.dispatch_id, shown.period, shown.dispatch_interval) == (
        created.dispatch_id,
        "HOUR",
        2,
    )

    updated = sdk.update_dispatches(
        UpdateDispatchesRequest(
            instance_id=creds.instance_id,
            task_id=task_id,
            dispatch_id=created.dispatch_id,
            body=TaskDispatch(
                start_datetime=START_2026, use_quartz_cron=True, cron="0 30 12 * * ?"
            ),
        )
    )
    assert updated.status_code == 200
    assert (updated.dispatch_id, updated.use_quartz_cron, updated.cron) == (
        created.dispatch_id,
        True,
        "0 30 12 * * ?",
    )
    assert updated.created_date == created.created_date
    assert updated.last_modified_date >= created.last_modified_date
    shown = sdk.show_dispatches(
        ShowDispatchesRequest(instance_id=creds.instance_id, task_id=task_id)
    )
    assert (shown.use_quartz_cron, shown.cron) == (True, "0 30 12 * * ?")


def test_quartz_cron_and_its_time_zone(sdk, signed, creds, base_path) -> None:
    utc_task = create_task(sdk, creds.instance_id, "TIMING")
    reply = signed.post(
        plan_path(base_path, utc_task),
        json={"start_datetime": START_2026, "use_quartz_cron": True, "cron": "0 30 12 * * ?"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["cron_timezone"] == "UTC"  # the default
    fires = [datetime.fromtimestamp(t / 1000, UTC) for t in reply.json()["next_fire_times"]]
    assert len(fires) == 5
    assert {(f.hour, f.minute, f.second) for f in fires} == {(12, 30, 0)}
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(fires))

    zoned_task = create_task(sdk, creds.instance_id, "TIMING")
    reply = signed.post(
        plan_path(base_path, zoned_task),
        json={
            "start_datetime": START_2026,
            "use_quartz_cron": True,
            "cron": "0 30 12 * * ?",
            "cron_timezone": "Asia/Shanghai",
        },
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["cron_timezone"] == "Asia/Shanghai"
    fires = [datetime.fromtimestamp(t / 1000, UTC) for t in reply.json()["next_fire_times"]]
    assert {(f.hour, f.minute) for f in fires} == {(4, 30)}  # 12:30 in UTC+8
    shown = signed.get(plan_path(base_path, zoned_task)).json()
    assert shown["cron_timezone"] == "Asia/Shanghai"

    # Quartz weekdays count from Sunday = 1: "2" is Monday.
    reply = signed.put(
        f"{plan_path(base_path, zoned_task)}/{shown['dispatch_id']}",
        json={"start_datetime": START_2026, "use_quartz_cron": True, "cron": "0 0 9 ? * 2"},
    )
    assert reply.status_code == 200, reply.text
    fires = [datetime.fromtimestamp(t / 1000, UTC) for t in reply.json()["next_fire_times"]]
    assert {(f.weekday(), f.hour) for f in fires} == {(0, 9)}
    assert reply.json()["cron_timezone"] == "UTC"


def test_next_fire_times_of_a_period_plan(sdk, signed, runtime, creds, base_path) -> None:
    now = runtime.clock_ms()
    future = create_task(sdk, creds.instance_id, "TIMING")
    start = (now // 1000 + 86400) * 1000
    reply = signed.post(
        plan_path(base_path, future),
        json={"start_datetime": start, "period": "HOUR", "dispatch_interval": 3},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["next_fire_times"] == [start + i * 3 * HOUR_MS for i in range(5)]

    past = create_task(sdk, creds.instance_id, "TIMING")
    reply = signed.post(
        plan_path(base_path, past),
        json={"start_datetime": START_2026, "period": "MIN", "dispatch_interval": 15},
    )
    fires = reply.json()["next_fire_times"]
    step = 15 * 60 * 1000
    assert len(fires) == 5
    assert all((t - START_2026) % step == 0 for t in fires)
    assert all(b - a == step for a, b in itertools.pairwise(fires))
    assert now < fires[0] <= now + step + 5000

    monthly = create_task(sdk, creds.instance_id, "TIMING")
    jan31 = datetime(2030, 1, 31, 6, 0, tzinfo=UTC)
    reply = signed.post(
        plan_path(base_path, monthly),
        json={"start_datetime": ms(jan31), "period": "MON", "dispatch_interval": 1},
    )
    expected = [
        datetime(2030, month, day, 6, 0, tzinfo=UTC)
        for month, day in ((1, 31), (2, 28), (3, 31), (4, 30), (5, 31))
    ]
    assert reply.json()["next_fire_times"] == [ms(d) for d in expected]


def test_start_datetime_as_iso_string_or_digits(sdk, signed, creds, base_path) -> None:
    for value in ("2026-01-01T00:00:00Z", "2026-01-01T08:00:00+08:00", str(START_2026)):
        task_id = create_task(sdk, creds.instance_id, "TIMING")
        reply = signed.post(
            plan_path(base_path, task_id),
            json={"start_datetime": value, "period": "DAY", "dispatch_interval": 1},
        )
        assert reply.status_code == 200, (value, reply.text)
        assert reply.json()["start_datetime"] == START_2026, value


def test_validation_names_the_field(sdk, signed, creds, base_path) -> None:
    task_id = create_task(sdk, creds.instance_id, "TIMING")
    period = {"start_datetime": START_2026, "period": "HOUR", "dispatch_interval": 1}
    cron = {"start_datetime": START_2026, "use_quartz_cron": True, "cron": "0 30 12 * * ?"}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("dispatch_interval", {**period, "dispatch_interval": 0}),
        ("dispatch_interval", {**period, "dispatch_interval": 60}),
        ("dispatch_interval", {**period, "dispatch_interval": -1}),
        ("dispatch_interval", {k: v for k, v in period.items() if k != "dispatch_interval"}),
        ("period", {**period, "period": "YEAR"}),
        ("period", {**period, "period": "hour"}),
        ("period", {"start_datetime": START_2026, "dispatch_interval": 1}),
        ("cron", {**cron, "cron": "not a cron expression"}),
        ("cron", {**cron, "cron": "0 61 12 * * ?"}),
        ("cron", {**cron, "cron": "*/5 * * * *"}),
        ("cron", {**cron, "cron": "0 0 12 ? * ?"}),
        ("cron", {k: v for k, v in cron.items() if k != "cron"}),
        ("cron_timezone", {**cron, "cron_timezone": "Mars/Olympus_Mons"}),
        ("cron_timezone", {**period, "cron_timezone": "not a zone"}),
        ("start_datetime", {**period, "start_datetime": 1000}),
        ("start_datetime", {**period, "start_datetime": 946684799999}),
        ("start_datetime", {**period, "start_datetime": 2147512447001}),
        ("start_datetime", {**period, "start_datetime": "yesterday"}),
        ("start_datetime", {k: v for k, v in period.items() if k != "start_datetime"}),
    ]
    for field, body in cases:
        reply = signed.post(plan_path(base_path, task_id), json=body)
        assert error_of(reply) == (400, "FDI.3033"), (field, body, reply.text)
        assert f"[{field}]" in reply.json()["error_msg"], (field, reply.text)
    assert error_of(signed.get(plan_path(base_path, task_id))) == (404, "FDI.3083")
    for body in ({**period, "dispatch_interval": "x"}, [], {**cron, "use_quartz_cron": "maybe"}):
        assert error_of(signed.post(plan_path(base_path, task_id), json=body)) == (
            400,
            "FDI.3002",
        )
    # The documented limits themselves are fine.
    edge = {**period, "start_datetime": 946684800000, "dispatch_interval": 59}
    assert signed.post(plan_path(base_path, task_id), json=edge).status_code == 200


def test_second_post_is_fdi_3002_and_keeps_the_plan(sdk, signed, creds, base_path) -> None:
    task_id = create_task(sdk, creds.instance_id, "TIMING")
    dispatch_id = create_plan(sdk, creds.instance_id, task_id, period="DAY")
    reply = signed.post(
        plan_path(base_path, task_id),
        json={"start_datetime": START_2026, "period": "HOUR", "dispatch_interval": 5},
    )
    assert error_of(reply) == (400, "FDI.3002")
    shown = signed.get(plan_path(base_path, task_id)).json()
    assert (shown["dispatch_id"], shown["period"], shown["dispatch_interval"]) == (
        dispatch_id,
        "DAY",
        1,
    )


def test_show_without_a_plan_is_404_fdi_3083(sdk, creds) -> None:
    task_id = create_task(sdk, creds.instance_id, "TIMING")
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.show_dispatches(ShowDispatchesRequest(instance_id=creds.instance_id, task_id=task_id))
    assert (caught.value.status_code, caught.value.error_code) == (404, "FDI.3083")


def test_put_with_a_wrong_dispatch_id_is_404(sdk, signed, creds, base_path) -> None:
    body = {"start_datetime": START_2026, "period": "HOUR", "dispatch_interval": 1}
    unplanned = create_task(sdk, creds.instance_id, "TIMING")
    reply = signed.put(f"{plan_path(base_path, unplanned)}/{uuid.uuid4().hex}", json=body)
    assert error_of(reply) == (404, "FDI.3083")

    planned = create_task(sdk, creds.instance_id, "TIMING")
    create_plan(sdk, creds.instance_id, planned)
    other_plan = create_plan(sdk, creds.instance_id, unplanned)  # exists, but on another task
    for wrong in (uuid.uuid4().hex, other_plan):
        with pytest.raises(exceptions.ClientRequestException) as caught:
            sdk.update_dispatches(
                UpdateDispatchesRequest(
                    instance_id=creds.instance_id,
                    task_id=planned,
                    dispatch_id=wrong,
                    body=TaskDispatch(**body),
                )
            )
        assert caught.value.status_code == 404


def test_plan_on_a_realtime_task_is_refused(sdk, signed, creds, base_path) -> None:
    task_id = create_task(sdk, creds.instance_id, "REALTIME")
    reply = signed.post(
        plan_path(base_path, task_id),
        json={"start_datetime": START_2026, "period": "HOUR", "dispatch_interval": 1},
    )
    assert error_of(reply) == (400, "FDI.3002")
    assert "TIMING" in reply.json()["error_msg"]
    assert error_of(signed.get(plan_path(base_path, task_id))) == (404, "FDI.3083")


def test_unknown_task_is_fdi_3081(signed, base_path) -> None:
    path = plan_path(base_path, uuid.uuid4().hex)
    body = {"start_datetime": START_2026, "period": "HOUR", "dispatch_interval": 1}
    assert error_of(signed.post(path, json=body)) == (404, "FDI.3081")
    assert error_of(signed.get(path)) == (404, "FDI.3081")
    assert error_of(signed.put(f"{path}/{uuid.uuid4().hex}", json=body)) == (404, "FDI.3081")


def test_plan_of_a_started_task_can_change(sdk, signed, creds, base_path) -> None:
    task_id = create_task(sdk, creds.instance_id, "TIMING")
    dispatch_id = create_plan(sdk, creds.instance_id, task_id)
    started = signed.post(
        f"{base_path}/batch-operation/tasks",
        json={"action_id": "start", "list": [{"task_id": task_id}]},
    )
    assert started.json()["success_count"] == 1
    reply = signed.put(
        f"{plan_path(base_path, task_id)}/{dispatch_id}",
        json={"start_datetime": START_2026, "period": "WEEK", "dispatch_interval": 2},
    )
    assert reply.status_code == 200, reply.text
    assert (reply.json()["period"], reply.json()["dispatch_interval"]) == ("WEEK", 2)
    task = signed.get(f"{base_path}/tasks/{task_id}").json()["task"]
    assert task["status"] == "running"


def test_a_stored_plan_that_no_longer_parses_shows_no_fires(
    sdk, signed, runtime, creds, base_path
) -> None:
    """A plan stored before a stricter rule came in (here: written past the API) never fires,
    and showing it, or the task's monitor entry, answers 200 with no next fire times."""
    from sqlalchemy import update

    from openfdi.store.tables import DispatchRow

    task_id = create_task(sdk, creds.instance_id, "TIMING")
    reply = signed.post(
        plan_path(base_path, task_id),
        json={"start_datetime": START_2026, "use_quartz_cron": True, "cron": "0 0 * * * ?"},
    )
    assert reply.status_code == 200, reply.text
    with runtime.db.write() as session:
        session.execute(
            update(DispatchRow).where(DispatchRow.task_id == task_id).values(cron="0 0 * * *")
        )

    shown = signed.get(plan_path(base_path, task_id))
    assert shown.status_code == 200, shown.text
    assert shown.json()["cron"] == "0 0 * * *"
    assert shown.json()["next_fire_times"] == []
    started = signed.post(
        f"{base_path}/batch-operation/tasks",
        json={"action_id": "start", "list": [{"task_id": task_id}]},
    )
    assert started.json()["success_count"] == 1, started.text
    monitors = signed.get(f"{base_path}/task-monitors")
    assert monitors.status_code == 200, monitors.text
