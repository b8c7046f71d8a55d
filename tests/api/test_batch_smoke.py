"""The seed example end to end through the official SDK, on SQLite and PostgreSQL metadata."""

from __future__ import annotations

import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    BatchStartOrStopTasksRequest,
    ListTasksRequest,
    OperateTasksBean,
    TaskBean,
)

from tests.factories import create_plan, create_task

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def test_batch_start_then_stop_changes_desired_state(sdk, creds) -> None:
    realtime = create_task(sdk, creds.instance_id, "REALTIME")
    timing = create_task(sdk, creds.instance_id, "TIMING")
    create_plan(sdk, creds.instance_id, timing)

    reply = sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(
                action_id="start", list=[TaskBean(task_id=realtime), TaskBean(task_id=timing)]
            ),
        )
    )
    assert (reply.status_code, reply.success_count, reply.failure_count) == (200, 2, 0)
    assert {s.task_id for s in reply.success} == {realtime, timing}

    listed = sdk.list_tasks(ListTasksRequest(instance_id=creds.instance_id, limit=10))
    states = {t.task_id: (t.status, t.execute_status) for t in listed.entities}
    # Honest state: no engine has run anything, so only the armed TIMING task is WAITING.
    assert states == {realtime: (1, "UNSTARTED"), timing: (1, "WAITING")}

    stop = sdk.batch_start_or_stop_tasks(
        BatchStartOrStopTasksRequest(
            instance_id=creds.instance_id,
            body=OperateTasksBean(action_id="stop", list=[TaskBean(task_id=timing)]),
        )
    )
    assert stop.success_count == 1
    listed = sdk.list_tasks(ListTasksRequest(instance_id=creds.instance_id, status=0))
    assert [t.task_id for t in listed.entities] == [timing]


def test_empty_list_is_fdi_3150(sdk, creds) -> None:
    with pytest.raises(exceptions.ClientRequestException) as caught:
        sdk.batch_start_or_stop_tasks(
            BatchStartOrStopTasksRequest(
                instance_id=creds.instance_id, body=OperateTasksBean(action_id="start", list=[])
            )
        )
    assert (caught.value.status_code, caught.value.error_code) == (400, "FDI.3150")
    assert len(caught.value.request_id) == 32
