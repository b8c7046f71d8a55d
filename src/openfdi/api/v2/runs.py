"""Runs: run now, terminate, run history; data source probes (test-connect, tables, columns)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from openfdi.api.auth import AuthFirstRoute, RuntimeDep, ScopeDep
from openfdi.api.v2 import ERRORS, PREFIX
from openfdi.services import probe, runs
from openfdi.wire.datasources import (
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
Id = Annotated[str, Path(max_length=64)]
OptStr = Annotated[str | None, Query(max_length=255)]


@router.post("/tasks/{task_id}/run", response_model=RunTaskResponse, summary="Run a task once now")
async def run_task(scope: ScopeDep, rt: RuntimeDep, task_id: Id) -> RunTaskResponse:
    return await run_in_threadpool(runs.run_task, rt, scope, task_id)


@router.post(
    "/tasks/{task_id}/terminate",
    response_model=StopTaskResponse,
    summary="Stop the run in progress (the desired state is unchanged)",
)
async def stop_task(scope: ScopeDep, rt: RuntimeDep, task_id: Id) -> StopTaskResponse:
    return await run_in_threadpool(runs.stop_task, rt, scope, task_id)


@router.get(
    "/tasks/{task_id}/monitor-logs",
    response_model=ListMonitorLogResponse,
    summary="Run history of a task",
)
async def list_monitor_log(
    scope: ScopeDep,
    rt: RuntimeDep,
    task_id: Id,
    offset: Annotated[int | None, Query(description="1-based page number")] = None,
    limit: int | None = None,
    begin_time: int | None = None,
    end_time: int | None = None,
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
    task_id: Id,
    run_id: Id,
    offset: Annotated[int | None, Query(description="1-based page number")] = None,
    limit: int | None = None,
) -> ListDirtyRowsResponse:
    return await run_in_threadpool(runs.list_dirty_rows, rt, scope, task_id, run_id, offset, limit)


@router.post(
    "/datasources/{datasource_id}/test-connect",
    response_model=StartTestDatasourceResponse,
    summary="Test the connectivity of a data source",
)
async def start_test_datasource(
    scope: ScopeDep, rt: RuntimeDep, datasource_id: Id
) -> StartTestDatasourceResponse:
    return await run_in_threadpool(probe.start_test_datasource, rt, scope, datasource_id)


@router.get(
    "/datasources/{datasource_id}/tables",
    response_model=ListDatasourceTablesResponse,
    summary="Tables of a data source",
)
async def list_datasource_tables(
    scope: ScopeDep, rt: RuntimeDep, datasource_id: Id, filter: OptStr = None
) -> ListDatasourceTablesResponse:
    return await run_in_threadpool(probe.list_datasource_tables, rt, scope, datasource_id, filter)


@router.get(
    "/datasources/{datasource_id}/columns",
    response_model=ListDatasourceColumnsResponse,
    summary="Columns of a table of a data source",
)
async def list_datasource_columns(
    scope: ScopeDep, rt: RuntimeDep, datasource_id: Id, table_name: OptStr = None
) -> ListDatasourceColumnsResponse:
    return await run_in_threadpool(
        probe.list_datasource_columns, rt, scope, datasource_id, table_name
    )
