"""Small builders for test data through the official SDK."""

from __future__ import annotations

import json
import uuid
from typing import Any

SQLITE_DETAIL = json.dumps(
    {
        "sourceSelectedDatasource": {"table": "orders", "incremental": {"column": "id"}},
        "targetSelectedDatasource": {"table": "orders_copy"},
    }
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_sqlite_datasource(sdk: Any, instance_id: str, path: str = "/tmp/x.db") -> str:
    from huaweicloudsdkroma.v2 import Content, CreateDatasourceInfoRequest, DatasourceInfo

    reply = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(
            instance_id=instance_id,
            body=DatasourceInfo(
                datasource_name=unique("ds"),
                datasource_type="SQLITE",
                content=Content(database_name=path),
            ),
        )
    )
    return str(reply.datasource_id)


def create_task(
    sdk: Any,
    instance_id: str,
    task_type: str = "REALTIME",
    source: str | None = None,
    target: str | None = None,
    name: str | None = None,
) -> str:
    from huaweicloudsdkroma.v2 import (
        CreateCommonTaskRequest,
        CreateCommonTaskRequestBody,
        TaskBasicRequestBody,
    )

    source = source or create_sqlite_datasource(sdk, instance_id)
    target = target or source
    reply = sdk.create_common_task(
        CreateCommonTaskRequest(
            instance_id=instance_id,
            body=CreateCommonTaskRequestBody(
                task=TaskBasicRequestBody(
                    task_name=name or unique("task"),
                    task_type=task_type,
                    source_datasource_id=source,
                    target_datasource_id=target,
                ),
                task_detail=SQLITE_DETAIL,
            ),
        )
    )
    return str(reply.task.task_id)


def create_plan(sdk: Any, instance_id: str, task_id: str, **fields: Any) -> str:
    from huaweicloudsdkroma.v2 import CreateDispatchesRequest, TaskDispatch

    body = {"start_datetime": 1767225600000, "period": "HOUR", "dispatch_interval": 1, **fields}
    reply = sdk.create_dispatches(
        CreateDispatchesRequest(instance_id=instance_id, task_id=task_id, body=TaskDispatch(**body))
    )
    return str(reply.dispatch_id)
