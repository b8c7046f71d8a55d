"""Runs: run now, terminate, run history; data source probes (test-connect, tables, columns)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from openfdi.api.auth import AuthFirstRoute, RuntimeDep, ScopeDep
from openfdi.api.params import Ignored, Int, Millis, ObjectId, PageNumber, Text
from openfdi.api.v2 import ERRORS, PREFIX
from openfdi.services import probe, runs
from openfdi.wire.datasources import (
    DatasourceInfoRequest,
    ListDatasourceColumnsResponse,
    ListDatasourceTablesResponse,
    StartTestDatasourceResponse,
)
from openfdi.wire.runs import (
    ListDirtyRowsResponse,
    ListMonitorLogResponse,
    RunTaskResponse,
    StopTaskResponse,
)

router = APIRouter(prefix=PREFIX, tags=["Task Runs"], responses=ERRORS, route_class=AuthFirstRoute)


@router.post("/tasks/{task_id}/run", response_model=RunTaskResponse, summary="Run a task once now")
async def run_task(scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId) -> RunTaskResponse:
    return await run_in_threadpool(runs.run_task, rt, scope, task_id)


@router.post(
    "/tasks/{task_id}/terminate",
    response_model=StopTaskResponse,
    summary="Stop the run in progress (the desired state is unchanged)",
)
async def stop_task(scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId) -> StopTaskResponse:
    return await run_in_threadpool(runs.stop_task, rt, scope, task_id)


@router.get(
    "/tasks/{task_id}/monitor-logs",
    response_model=ListMonitorLogResponse,
    summary="Run history of a task",
)
async def list_monitor_log(
    scope: ScopeDep,
    rt: RuntimeDep,
    task_id: ObjectId,
    offset: PageNumber = None,
    limit: Int = None,
    begin_time: Millis = None,
    end_time: Millis = None,
) -> ListMonitorLogResponse:
    return await run_in_threadpool(
        lambda: runs.list_monitor_log(
            rt,
            scope,
            task_id,
            offset=offset,
            limit=limit,
            begin_time=begin_time,
            end_time=end_time,
        )
    )


@router.get(
    "/tasks/{task_id}/runs/{run_id}/dirty-data",
    response_model=ListDirtyRowsResponse,
    summary="openfdi extension: the rows a run's target refused, with the reasons",
)
async def list_dirty_data(
    scope: ScopeDep,
    rt: RuntimeDep,
    task_id: ObjectId,
    run_id: ObjectId,
    offset: PageNumber = None,
    limit: Int = None,
) -> ListDirtyRowsResponse:
    return await run_in_threadpool(runs.list_dirty_rows, rt, scope, task_id, run_id, offset, limit)


@router.post(
    "/datasources/{datasource_id}/test-connect",
    response_model=StartTestDatasourceResponse,
    summary="Test the connectivity of a data source",
)
async def start_test_datasource(
    scope: ScopeDep,
    rt: RuntimeDep,
    datasource_id: ObjectId,
    body: DatasourceInfoRequest | None = None,
) -> StartTestDatasourceResponse:
    return await run_in_threadpool(probe.start_test_datasource, rt, scope, datasource_id, body)


@router.get(
    "/datasources/{datasource_id}/tables",
    response_model=ListDatasourceTablesResponse,
    summary="Tables of a data source",
)
async def list_datasource_tables(
    scope: ScopeDep,
    rt: RuntimeDep,
    datasource_id: ObjectId,
    filter: Text = None,
    position: Ignored = None,  # SOURCE | TARGET: the SDK sends it, every end lists the same
    db_name: Ignored = None,  # Hive only
    db_schema: Ignored = None,  # GAUSS100 only
) -> ListDatasourceTablesResponse:
    return await run_in_threadpool(probe.list_datasource_tables, rt, scope, datasource_id, filter)


@router.get(
    "/datasources/{datasource_id}/columns",
    response_model=ListDatasourceColumnsResponse,
    summary="Columns of a table of a data source",
)
async def list_datasource_columns(
    scope: ScopeDep,
    rt: RuntimeDep,
    datasource_id: ObjectId,
    table_name: Text = None,
    position: Ignored = None,
    db_name: Ignored = None,
) -> ListDatasourceColumnsResponse:
    return await run_in_threadpool(
        probe.list_datasource_columns, rt, scope, datasource_id, table_name
    )
