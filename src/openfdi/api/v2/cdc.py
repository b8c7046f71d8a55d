"""Composite (CDC) tasks: init, create, update, table mappings, reset (the multi-tasks paths)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from openfdi.api.auth import AuthFirstRoute, RuntimeDep, ScopeDep
from openfdi.api.params import ObjectId
from openfdi.api.v2 import ERRORS, PREFIX
from openfdi.services import cdc
from openfdi.wire.cdc import (
    MappingIdResponse,
    MessageResponse,
    MultiTaskIdResponse,
    MultiTaskInitElement,
    MultiTaskInitRequest,
    MultiTaskMappingCreateRequest,
    MultiTaskRequest,
    MultiTaskResetRequest,
    MultiTaskUpdateRequest,
)

router = APIRouter(
    prefix=PREFIX, tags=["Composite Tasks"], responses=ERRORS, route_class=AuthFirstRoute
)


@router.post(
    "/multi-tasks/init",
    response_model=list[MultiTaskInitElement],
    summary="Init a composite task: allocate its id, auto-map tables (a bare JSON array)",
)
async def install_multi_tasks(
    scope: ScopeDep, rt: RuntimeDep, body: MultiTaskInitRequest
) -> list[MultiTaskInitElement]:
    return await run_in_threadpool(cdc.install_multi_tasks, rt, scope, body)


@router.post("/multi-tasks", response_model=MultiTaskIdResponse, summary="Create a composite task")
async def create_multi_tasks(
    scope: ScopeDep, rt: RuntimeDep, body: MultiTaskRequest
) -> MultiTaskIdResponse:
    return await run_in_threadpool(cdc.create_multi_tasks, rt, scope, body)


@router.put(
    "/multi-tasks/{task_id}", response_model=MultiTaskIdResponse, summary="Modify a composite task"
)
async def update_multi_tasks(
    scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId, body: MultiTaskUpdateRequest
) -> MultiTaskIdResponse:
    return await run_in_threadpool(cdc.update_multi_tasks, rt, scope, task_id, body)


@router.post(
    "/multi-tasks/{task_id}/mappings", response_model=MappingIdResponse, summary="Add a mapping"
)
async def create_multi_task_mappings(
    scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId, body: MultiTaskMappingCreateRequest
) -> MappingIdResponse:
    return await run_in_threadpool(cdc.create_multi_task_mappings, rt, scope, task_id, body)


@router.delete(
    "/multi-tasks/{task_id}/mappings/{mapping_id}",
    response_model=MappingIdResponse,
    summary="Delete a mapping",
)
async def delete_multi_task_mapping(
    scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId, mapping_id: ObjectId
) -> MappingIdResponse:
    return await run_in_threadpool(cdc.delete_multi_task_mapping, rt, scope, task_id, mapping_id)


@router.post(
    "/multi-tasks/{task_id}/reset", response_model=MessageResponse, summary="Reset CDC progress"
)
async def reset_multi_task_offset(
    scope: ScopeDep, rt: RuntimeDep, task_id: ObjectId, body: MultiTaskResetRequest
) -> MessageResponse:
    return await run_in_threadpool(cdc.reset_multi_task_offset, rt, scope, task_id, body)
