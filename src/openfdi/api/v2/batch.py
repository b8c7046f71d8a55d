"""`POST …/batch-operation/tasks`: start or stop up to 10 tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
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
    summary="Start or stop tasks in batches (at most 10)",
)
async def batch_start_or_stop_tasks(
    scope: ScopeDep,
    rt: RuntimeDep,
    body: OperateTasksRequest,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    answer = await run_in_threadpool(
        batch.batch_start_or_stop_tasks, rt, scope, body, idempotency_key
    )
    # Serialised here, once: returned as a model, FastAPI would validate it again against
    # `response_model` (which stays declared for the OpenAPI document) before dumping it.
    return Response(answer.model_dump_json(exclude_none=True), media_type="application/json")
