"""Tasks: create, list, show, update, delete; statistics; the monitor overview."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from openfdi.api.auth import AuthFirstRoute, RuntimeDep, ScopeDep
from openfdi.api.params import Ignored, Int, ObjectId, PageNumber, Text
from openfdi.api.v2 import ERRORS, PREFIX
from openfdi.services import tasks
from openfdi.wire.tasks import (
    CommonTaskResponse,
    CountTasksResponse,
    CreateCommonTaskRequest,
    ListMonitorInfosResponse,
    ListTasksResponse,
)

router = APIRouter(
    prefix=PREFIX, tags=["Task Management"], responses=ERRORS, route_class=AuthFirstRoute
)


@router.post("/tasks", response_model=CommonTaskResponse, summary="Create a common task")
async def create_common_task(
    scope: ScopeDep, rt: RuntimeDep, body: CreateCommonTaskRequest
) -> CommonTaskResponse:
    return await run_in_threadpool(tasks.create_common_task, rt, scope, body)


@router.get("/tasks", response_model=ListTasksResponse, summary="List tasks")
async def list_tasks(
    scope: ScopeDep,
    rt: RuntimeDep,
    limit: Int = None,
    offset: Int = None,
    task_id: Text = None,
    name: Text = None,
    task_name: Text = None,  # the older name of `name`
    taks_name: Text = None,  # an older (sic) name of `name`
    status: Int = None,
    task_type: Text = None,
    source_datasource_id: Text = None,
    target_datasource_id: Text = None,
    datasource_id: Text = None,
    sort_field: Text = None,
    sort_type: Text = None,
    execute_status: Text = None,
    source_app_id: Text = None,
    target_app_id: Text = None,
    task_tag: Text = None,
    task_mode: Ignored = None,
) -> ListTasksResponse:
    query = tasks.TaskFilter(
        task_id=task_id,
        name=name or task_name or taks_name,
        status=status,
        task_type=task_type,
        source_datasource_id=source_datasource_id,
        target_datasource_id=target_datasource_id,
        datasource_id=datasource_id,
        execute_status=execute_status,
        source_app_id=source_app_id,
        target_app_id=target_app_id,
        task_tag=task_tag,
        sort_field=sort_field,
        sort_type=sort_type,
    )
    return await run_in_threadpool(tasks.list_tasks, rt, scope, query, offset, limit)


@router.get("/tasks/{task_id}", response_model=CommonTaskResponse, summary="Show a task")
async def show_task(scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId) -> CommonTaskResponse:
    return await run_in_threadpool(tasks.show_task, rt, scope, task_id)


@router.put("/tasks/{task_id}", response_model=CommonTaskResponse, summary="Update a task")
async def update_task(
    scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId, body: CreateCommonTaskRequest
) -> CommonTaskResponse:
    return await run_in_threadpool(tasks.update_task, rt, scope, task_id, body)


@router.delete(
    "/tasks/{task_id}", status_code=204, response_class=Response, summary="Delete a task"
)
async def delete_task(scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId) -> Response:
    await run_in_threadpool(tasks.delete_task, rt, scope, task_id)
    return Response(status_code=204)


@router.get("/statistics/tasks", response_model=CountTasksResponse, summary="Count tasks by state")
async def count_tasks(scope: ScopeDep, rt: RuntimeDep) -> CountTasksResponse:
    return await run_in_threadpool(tasks.count_tasks, rt, scope)


@router.get(
    "/task-monitors", response_model=ListMonitorInfosResponse, summary="Monitor overview of tasks"
)
async def list_monitor_infos(
    scope: ScopeDep,
    rt: RuntimeDep,
    offset: PageNumber = None,
    limit: Int = None,
    task_name: Text = None,
    execute_status: Text = None,
) -> ListMonitorInfosResponse:
    return await run_in_threadpool(
        lambda: tasks.list_monitor_infos(
            rt,
            scope,
            offset=offset,
            limit=limit,
            task_name=task_name,
            execute_status=execute_status,
        )
    )
