"""Batch start/stop of up to 10 tasks (`POST …/batch-operation/tasks`), as fdi-api.md H.1 says.

The whole batch is one transaction: either the FDI.3083 check refuses it and nothing changes,
or every entry is applied and reported on its own. Task rows are locked in id order so that two
overlapping batches on PostgreSQL queue instead of deadlocking; SQLite serialises writers anyway.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openfdi.domain.scope import Scope
from openfdi.domain.states import Action, DesiredState, TaskType, apply
from openfdi.errors import (
    DispatchNotFound,
    InvalidParameters,
    TaskIdEmpty,
    TaskListEmpty,
    TaskNotFound,
)
from openfdi.services.runtime import Runtime
from openfdi.store.tables import DispatchRow, IdempotencyRow, TaskRow
from openfdi.wire.batch import (
    BatchStartOrStopTasksResponse,
    OperateTasksRequest,
    TaskBeanFacade,
)


def _distinct_ids(req: OperateTasksRequest) -> list[str]:
    """Entries in request order, each id once; a missing and an empty id are the same entry."""
    seen: dict[str, None] = {}
    for bean in req.tasks or []:
        seen.setdefault((bean.task_id or "").strip(), None)
    return list(seen)


def _refuse_unplanned_timing(session: Session, tasks: dict[str, TaskRow]) -> None:
    timing = sorted(t.id for t in tasks.values() if t.task_type == TaskType.TIMING)
    if not timing:
        return
    planned = set(
        session.scalars(select(DispatchRow.task_id).where(DispatchRow.task_id.in_(timing)))
    )
    missing = [task_id for task_id in timing if task_id not in planned]
    if missing:
        raise DispatchNotFound(
            f"{DispatchNotFound.template} Tasks without a plan: {', '.join(missing)}."
        )


def _failure(task_id: str, task_name: str | None, code: str, message: str) -> TaskBeanFacade:
    return TaskBeanFacade(task_id=task_id, task_name=task_name, error_code=code, error_msg=message)


def _apply_batch(
    rt: Runtime, session: Session, scope: Scope, req: OperateTasksRequest
) -> BatchStartOrStopTasksResponse:
    ids = _distinct_ids(req)
    if not ids:
        raise TaskListEmpty()
    action = Action(req.action_id)
    wanted = sorted(i for i in ids if i)
    rows = session.scalars(
        select(TaskRow)
        .where(
            TaskRow.id.in_(wanted),
            TaskRow.instance_id == scope.instance_id,
            TaskRow.project_id == scope.project_id,
        )
        .order_by(TaskRow.id)
        .with_for_update()
    )
    tasks = {t.id: t for t in rows}
    if action is Action.START:
        _refuse_unplanned_timing(session, tasks)

    now = rt.clock_ms()
    success: list[TaskBeanFacade] = []
    failure: list[TaskBeanFacade] = []
    for task_id in ids:
        if not task_id:
            failure.append(_failure(task_id, None, TaskIdEmpty.code, TaskIdEmpty.template))
            continue
        task = tasks.get(task_id)
        if task is None:
            failure.append(_failure(task_id, None, TaskNotFound.code, TaskNotFound.template))
            continue
        transition = apply(DesiredState(task.status), action)
        if transition.changed:
            task.status = transition.new_state.value
            task.updated_at = now
        success.append(TaskBeanFacade(task_id=task.id, task_name=task.name))
    return BatchStartOrStopTasksResponse(
        success_count=len(success), failure_count=len(failure), success=success, failure=failure
    )


def _digest(req: OperateTasksRequest) -> str:
    canonical = json.dumps(
        req.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000


def batch_start_or_stop_tasks(
    rt: Runtime, scope: Scope, req: OperateTasksRequest, idempotency_key: str | None = None
) -> BatchStartOrStopTasksResponse:
    """Apply the batch; with an `Idempotency-Key`, a retried call gets the first answer back.

    The key and the answer are stored in the same transaction as the state change, so a crash
    can never leave one without the other. Keys are kept for 24 hours.
    """
    if idempotency_key is None:
        with rt.db.write() as session:
            return _apply_batch(rt, session, scope, req)
    if not 1 <= len(idempotency_key) <= 128:
        raise InvalidParameters(detail="Idempotency-Key must be 1 to 128 characters")
    digest = _digest(req)
    try:
        with rt.db.write() as session:
            replay = _replay(session, scope, idempotency_key, digest)
            if replay is not None:
                return replay
            response = _apply_batch(rt, session, scope, req)
            now = rt.clock_ms()
            session.execute(
                delete(IdempotencyRow).where(IdempotencyRow.created_at < now - IDEMPOTENCY_TTL_MS)
            )
            session.add(
                IdempotencyRow(
                    project_id=scope.project_id,
                    key=idempotency_key,
                    request_digest=digest,
                    status_code=200,
                    body=response.model_dump_json(),
                    created_at=now,
                )
            )
            return response
    except IntegrityError:
        # A concurrent call with the same key committed first: ours rolled back; answer theirs.
        with rt.db.read() as session:
            replay = _replay(session, scope, idempotency_key, digest)
        if replay is None:
            raise
        return replay


def _replay(
    session: Session, scope: Scope, key: str, digest: str
) -> BatchStartOrStopTasksResponse | None:
    stored = session.get(IdempotencyRow, (scope.project_id, key))
    if stored is None:
        return None
    if stored.request_digest != digest:
        raise InvalidParameters(detail="this Idempotency-Key was used with a different request")
    return BatchStartOrStopTasksResponse.model_validate_json(stored.body)
