"""What a run could only fail on later is refused when a data source or a task is saved
(400 FDI.3033 naming the field): a REALTIME table task with nothing to follow, a port that is no
port, a task end whose type no connector serves. Driven through the official SDK."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkroma.v2 import (
    Content,
    CreateCommonTaskRequest,
    CreateCommonTaskRequestBody,
    CreateDatasourceInfoRequest,
    DatasourceInfo,
    TaskBasicRequestBody,
    UpdateDatasourceInfoRequest,
    UpdateTaskRequest,
)

from openfdi.connectors.registry import Registry
from openfdi.connectors.sqlite import SPEC as SQLITE_SPEC
from openfdi.services.runtime import Runtime
from tests.factories import create_sqlite_datasource, unique

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)

POLLED = {
    "sourceSelectedDatasource": {"table": "orders"},
    "targetSelectedDatasource": {"table": "c"},
}
FOLLOWED = {
    "sourceSelectedDatasource": {"table": "orders", "incremental": {"column": "id"}},
    "targetSelectedDatasource": {"table": "c"},
}


def refused(call: Callable[[], Any], field: str) -> str:
    with pytest.raises(exceptions.ClientRequestException) as caught:
        call()
    err = caught.value
    assert (err.status_code, err.error_code) == (400, "FDI.3033"), err.error_msg
    assert f"[{field}]" in err.error_msg
    return str(err.error_msg)


def task_body(source: str, target: str, task_type: str, detail: dict[str, Any]) -> Any:
    return CreateCommonTaskRequestBody(
        task=TaskBasicRequestBody(
            task_name=unique("task"),
            task_type=task_type,
            source_datasource_id=source,
            target_datasource_id=target,
        ),
        task_detail=json.dumps(detail),
    )


def create(sdk: Any, creds: Any, body: Any) -> str:
    reply = sdk.create_common_task(
        CreateCommonTaskRequest(instance_id=creds.instance_id, body=body)
    )
    return str(reply.task.task_id)


def test_a_realtime_table_task_needs_an_incremental_column(sdk, creds) -> None:  # type: ignore[no-untyped-def]
    ds = create_sqlite_datasource(sdk, creds.instance_id)
    msg = refused(lambda: create(sdk, creds, task_body(ds, ds, "REALTIME", POLLED)), "task_detail")
    assert "incremental" in msg
    timing = create(sdk, creds, task_body(ds, ds, "TIMING", POLLED))  # a TIMING copy needs none
    realtime = create(sdk, creds, task_body(ds, ds, "REALTIME", FOLLOWED))
    for task_id in (timing, realtime):  # nor may an update make one REALTIME without it
        refused(
            lambda task_id=task_id: sdk.update_task(  # type: ignore[misc]
                UpdateTaskRequest(
                    instance_id=creds.instance_id,
                    task_id=task_id,
                    body=task_body(ds, ds, "REALTIME", POLLED),
                )
            ),
            "task_detail",
        )


def test_a_source_that_follows_by_itself_needs_no_incremental_column(  # type: ignore[no-untyped-def]
    sdk, creds, runtime: Runtime
) -> None:
    """Decided by the source connector's declared capabilities (a message source's change feed)."""
    caps = dataclasses.replace(SQLITE_SPEC.capabilities, realtime=True)
    following = dataclasses.replace(SQLITE_SPEC, capabilities=caps)
    runtime.__dict__["registry"] = Registry([following]).bound(runtime.registry.host)
    ds = create_sqlite_datasource(sdk, creds.instance_id)
    assert create(sdk, creds, task_body(ds, ds, "REALTIME", POLLED))


def test_a_task_end_without_a_connector_is_refused_naming_its_type(sdk, creds) -> None:  # type: ignore[no-untyped-def]
    hl7 = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(
            instance_id=creds.instance_id,
            body=DatasourceInfo(
                datasource_name=unique("hl7"), datasource_type="HL7", content=Content()
            ),
        )
    ).datasource_id  # kept: a data source of any ROMA type may be saved
    ds = create_sqlite_datasource(sdk, creds.instance_id)
    msg = refused(
        lambda: create(sdk, creds, task_body(hl7, ds, "TIMING", FOLLOWED)), "source_datasource_id"
    )
    assert "HL7" in msg
    msg = refused(
        lambda: create(sdk, creds, task_body(ds, hl7, "TIMING", FOLLOWED)), "target_datasource_id"
    )
    assert "HL7" in msg


@pytest.mark.parametrize("port", ["abc", "70000", "0", "-1", "3.5", "3306 ; x", "9" * 5000, "٣٣٠٦"])
def test_a_port_that_is_no_port_is_refused(sdk, creds, port: str) -> None:  # type: ignore[no-untyped-def]
    def info(p: Any) -> DatasourceInfo:
        return DatasourceInfo(
            datasource_name="db",
            datasource_type="MYSQL",
            content=Content(host="127.0.0.1", port=p, database_name="d", user_name="u"),
        )

    refused(
        lambda: sdk.create_datasource_info(
            CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=info(port))
        ),
        "content.port",
    )
    ds = sdk.create_datasource_info(
        CreateDatasourceInfoRequest(instance_id=creds.instance_id, body=info(" 3306"))
    ).datasource_id
    refused(
        lambda: sdk.update_datasource_info(
            UpdateDatasourceInfoRequest(
                instance_id=creds.instance_id, datasource_id=ds, body=info(port)
            )
        ),
        "content.port",
    )
