"""Scheduled plans of TIMING tasks."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from openfdi.api.auth import AuthFirstRoute, RuntimeDep, ScopeDep
from openfdi.api.params import ObjectId
from openfdi.api.v2 import ERRORS, PREFIX
from openfdi.services import dispatches
from openfdi.wire.dispatches import TaskDispatchRequest, TaskDispatchResponse

router = APIRouter(
    prefix=PREFIX, tags=["Scheduled Plans"], responses=ERRORS, route_class=AuthFirstRoute
)


@router.post(
    "/tasks/{task_id}/dispatches",
    response_model=TaskDispatchResponse,
    summary="Create the scheduled plan of a task",
)
async def create_dispatches(
    scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId, body: TaskDispatchRequest
) -> TaskDispatchResponse:
    return await run_in_threadpool(dispatches.create_dispatches, rt, scope, task_id, body)


@router.get(
    "/tasks/{task_id}/dispatches",
    response_model=TaskDispatchResponse,
    summary="Show the scheduled plan of a task",
)
async def show_dispatches(
    scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId
) -> TaskDispatchResponse:
    return await run_in_threadpool(dispatches.show_dispatches, rt, scope, task_id)


@router.put(
    "/tasks/{task_id}/dispatches/{dispatch_id}",
    response_model=TaskDispatchResponse,
    summary="Modify the scheduled plan of a task",
)
async def update_dispatches(
    scope: ScopeDep,
    rt: RuntimeDep,
    task_id: ObjectId,
    dispatch_id: ObjectId,
    body: TaskDispatchRequest,
) -> TaskDispatchResponse:
    return await run_in_threadpool(
        dispatches.update_dispatches, rt, scope, task_id, dispatch_id, body
    )
