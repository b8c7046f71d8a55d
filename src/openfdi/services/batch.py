"""Batch start/stop of up to 10 tasks (`POST …/batch-operation/tasks`), as fdi-api.md H.1 says.

The whole batch is one transaction: either the FDI.3083 check refuses it and nothing changes,
or every entry is applied and reported on its own. `stop` also ends the listed tasks' runs in
progress, whoever started them (a manual run of a stopped task too), in the same transaction.
Task rows are locked in id order (FOR NO KEY UPDATE: a run being inserted for the task, which
takes a key-share lock, is not blocked), then their runs in id order, so that overlapping
batches on PostgreSQL queue instead of deadlocking; SQLite serialises writers anyway.

This is the busiest write of the control plane, so it runs as a few fixed Core statements
(one SELECT of the listed tasks with their plan, one UPDATE of those that change) rather than
through ORM objects, whose bookkeeping cost several times the SQL itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence

from sqlalchemy import Connection, Row, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from openfdi.domain.scope import Scope
from openfdi.domain.states import Action, DesiredState, TaskType, apply
from openfdi.errors import (
    DispatchNotFound,
    InvalidParameters,
    TaskIdEmpty,
    TaskListEmpty,
    TaskNotFound,
)
from openfdi.services.control_loops import start_realtime_runs
from openfdi.services.runs import engine_here, stop_deadline_ms, stop_local
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import DispatchRow, IdempotencyRow, TaskRow
from openfdi.wire.batch import (
    BatchStartOrStopTasksResponse,
    OperateTasksRequest,
    TaskBeanFacade,
)

log = logging.getLogger(__name__)

# The listed tasks of the caller's instance, each with whether it has a plan, locked (on
# PostgreSQL) in id order. The plan is an EXISTS in the select list, not a join, so that only
# task rows are locked.
_LOAD_TASKS = (
    select(
        TaskRow.id,
        TaskRow.name,
        TaskRow.task_type,
        TaskRow.status,
        exists().where(DispatchRow.task_id == TaskRow.id).label("planned"),
    )
    .where(
        TaskRow.id.in_(bindparam("ids", expanding=True)),
        TaskRow.instance_id == bindparam("instance_id"),
        TaskRow.project_id == bindparam("project_id"),
    )
    .order_by(TaskRow.id)
    .with_for_update(of=TaskRow, key_share=True)
)
_SET_STATUS = (
    update(TaskRow)
    .where(TaskRow.id.in_(bindparam("ids", expanding=True)))
    .values(status=bindparam("new_status"), updated_at=bindparam("now"))
)
_LOAD_KEY = select(IdempotencyRow.request_digest, IdempotencyRow.body).where(
    IdempotencyRow.project_id == bindparam("project_id"), IdempotencyRow.key == bindparam("key")
)
_SAVE_KEY = insert(IdempotencyRow)
_EXPIRE_KEYS = delete(IdempotencyRow).where(IdempotencyRow.created_at < bindparam("cutoff"))

_Task = Row[str, str, str, int, bool]  # id, name, task_type, status, planned


def _distinct_ids(req: OperateTasksRequest) -> list[str]:
    """Entries in request order, each id once; a missing and an empty id are the same entry."""
    seen: dict[str, None] = {}
    for bean in req.tasks or []:
        seen.setdefault((bean.task_id or "").strip(), None)
    return list(seen)


def _refuse_unplanned_timing(tasks: Sequence[_Task]) -> None:
    missing = [t.id for t in tasks if t.task_type == TaskType.TIMING and not t.planned]
    if missing:
        raise DispatchNotFound(
            f"{DispatchNotFound.template} Tasks without a plan: {', '.join(missing)}."
        )


def _failure(task_id: str, code: str, message: str) -> TaskBeanFacade:
    return TaskBeanFacade(task_id=task_id, error_code=code, error_msg=message)


def _apply_batch(
    rt: Runtime, conn: Connection, scope: Scope, req: OperateTasksRequest
) -> tuple[BatchStartOrStopTasksResponse, list[str], list[str]]:
    """The answer, the runs a stop marked stopping (for this process's executor), and the
    tasks a start changed to running."""
    ids = _distinct_ids(req)
    if not ids:
        raise TaskListEmpty()
    action = Action(req.action_id)
    rows = conn.execute(
        _LOAD_TASKS,
        {
            "ids": [i for i in ids if i],
            "instance_id": scope.instance_id,
            "project_id": scope.project_id,
        },
    ).all()
    if action is Action.START:
        _refuse_unplanned_timing(rows)

    tasks = {t.id: t for t in rows}
    changed: dict[DesiredState, list[str]] = {}
    success: list[TaskBeanFacade] = []
    failure: list[TaskBeanFacade] = []
    for task_id in ids:
        task = tasks.get(task_id)
        if not task_id:
            failure.append(_failure(task_id, TaskIdEmpty.code, TaskIdEmpty.template))
        elif task is None:
            failure.append(_failure(task_id, TaskNotFound.code, TaskNotFound.template))
        else:
            transition = apply(DesiredState(task.status), action)
            if transition.changed:
                changed.setdefault(transition.new_state, []).append(task_id)
            success.append(TaskBeanFacade(task_id=task_id, task_name=task.name))
    now = rt.clock_ms()
    for new_state, task_ids in changed.items():
        conn.execute(_SET_STATUS, {"ids": task_ids, "new_status": new_state.value, "now": now})
    stopping: list[str] = []
    if action is Action.STOP and tasks:
        # Whatever the task's status: `stop` ends what is running (docs/runs.md).
        stopping = runs.request_stop_many(conn, sorted(tasks), now, stop_deadline_ms(rt))
    response = BatchStartOrStopTasksResponse(
        success_count=len(success), failure_count=len(failure), success=success, failure=failure
    )
    return response, stopping, changed.get(DesiredState.RUNNING, [])


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
        with rt.db.write_conn() as conn:
            response, stopping, started = _apply_batch(rt, conn, scope, req)
        _after_batch(rt, stopping, started)
        return response
    if not 1 <= len(idempotency_key) <= 128:
        raise InvalidParameters(detail="Idempotency-Key must be 1 to 128 characters")
    digest = _digest(req)
    try:
        with rt.db.write_conn() as conn:
            replay = _replay(conn, scope, idempotency_key, digest)
            if replay is not None:
                return replay
            response, stopping, started = _apply_batch(rt, conn, scope, req)
            now = rt.clock_ms()
            conn.execute(_EXPIRE_KEYS, {"cutoff": now - IDEMPOTENCY_TTL_MS})
            conn.execute(
                _SAVE_KEY,
                {
                    "project_id": scope.project_id,
                    "key": idempotency_key,
                    "request_digest": digest,
                    "status_code": 200,
                    "body": response.model_dump_json(),
                    "created_at": now,
                },
            )
        _after_batch(rt, stopping, started)
        return response
    except IntegrityError:
        # A concurrent call with the same key committed first: ours rolled back; answer theirs.
        with rt.db.lookup() as conn:
            replay = _replay(conn, scope, idempotency_key, digest)
        if replay is None:
            raise
        return replay


def _after_batch(rt: Runtime, stopping: list[str], started: list[str]) -> None:
    """Once the batch is committed: stop this process's runs it marked stopping, and start the
    following runs of the REALTIME (and composite) tasks it started, where this server runs the
    engine. The supervisor would start them too, but only at its next pass (up to its
    interval later, a quarter of a second by default); a start that fails here is its to
    retry, so the answer never depends on it."""
    stop_local(rt, stopping)
    if started and engine_here(rt):
        try:
            start_realtime_runs(rt, rt.clock_ms(), started)
        except Exception:  # a database hiccup: the supervisor's next pass starts them
            log.exception("starting the runs of %d started tasks failed", len(started))


def _replay(
    conn: Connection, scope: Scope, key: str, digest: str
) -> BatchStartOrStopTasksResponse | None:
    stored = conn.execute(_LOAD_KEY, {"project_id": scope.project_id, "key": key}).first()
    if stored is None:
        return None
    if stored.request_digest != digest:
        raise InvalidParameters(detail="this Idempotency-Key was used with a different request")
    return BatchStartOrStopTasksResponse.model_validate_json(stored.body)
