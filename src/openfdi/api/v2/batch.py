"""`POST …/batch-operation/tasks`: start or stop up to 10 tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from starlette.concurrency import run_in_threadpool

from openfdi.api.auth import AuthFirstRoute, RuntimeDep, ScopeDep
from openfdi.api.v2 import ERRORS, PREFIX
from openfdi.services import batch
from openfdi.wire.batch import BatchStartOrStopTasksResponse, OperateTasksRequest

router = APIRouter(
    prefix=PREFIX, tags=["Task Management"], responses=ERRORS, route_class=AuthFirstRoute
)


@router.post(
    "/batch-operation/tasks",
    response_model=BatchStartOrStopTasksResponse,
    response_model_exclude_none=True,
    summary="Start or stop tasks in batches (at most 10)",
)
async def batch_start_or_stop_tasks(
    scope: ScopeDep,
    rt: RuntimeDep,
    body: OperateTasksRequest,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> BatchStartOrStopTasksResponse:
    return await run_in_threadpool(
        batch.batch_start_or_stop_tasks, rt, scope, body, idempotency_key
    )
