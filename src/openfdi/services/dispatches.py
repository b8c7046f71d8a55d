"""Scheduled plans ("dispatches"): one per TIMING task; create, show, update."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openfdi.domain.ids import new_hex_id
from openfdi.domain.schedule import MisfirePolicy, Plan, PlanError, build_plan
from openfdi.domain.scope import Scope
from openfdi.domain.states import TaskType
from openfdi.errors import DispatchNotFound, InvalidParameter, InvalidParameters
from openfdi.scheduler import plans
from openfdi.services.lookup import get_task_row
from openfdi.services.runtime import Runtime
from openfdi.store.tables import DispatchRow, TaskRow
from openfdi.wire.dispatches import TaskDispatchRequest, TaskDispatchResponse

NEXT_FIRES_SHOWN = 5


def _start_ms(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidParameter(
            name="start_datetime", detail="Use epoch milliseconds or an ISO-8601 time."
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _plan(req: TaskDispatchRequest) -> Plan:
    try:
        return build_plan(
            start_datetime_ms=_start_ms(req.start_datetime),
            period=req.period or None,
            dispatch_interval=req.dispatch_interval,
            use_quartz_cron=req.use_quartz_cron,
            cron=req.cron,
            cron_timezone=req.cron_timezone,
            misfire_policy=req.misfire_policy,
        )
    except PlanError as exc:
        raise InvalidParameter(name=exc.field, detail=exc.detail) from exc


def next_fire_ms(row: DispatchRow, now_ms: int, count: int) -> list[int]:
    """The next fires after now, computed as the scheduler fires them (scheduler.plans)."""
    return plans.next_fire_ms(row, now_ms, count)


def _to_wire(row: DispatchRow, now_ms: int) -> TaskDispatchResponse:
    return TaskDispatchResponse(
        dispatch_id=row.id,
        task_id=row.task_id,
        start_datetime=row.start_datetime,
        period=row.period,
        dispatch_interval=row.dispatch_interval,
        created_date=row.created_at,
        last_modified_date=row.updated_at,
        remark=row.remark,
        use_quartz_cron=row.use_quartz_cron,
        cron=row.cron,
        cron_timezone=row.cron_timezone,
        misfire_policy=row.misfire_policy,
        next_fire_times=next_fire_ms(row, now_ms, NEXT_FIRES_SHOWN),
    )


def _apply(row: DispatchRow, plan: Plan, remark: str | None, now: int) -> None:
    row.start_datetime = plan.start_datetime_ms
    row.period = plan.period.value if plan.period else None
    row.dispatch_interval = plan.dispatch_interval
    row.use_quartz_cron = plan.use_quartz_cron
    row.cron = plan.cron
    row.cron_timezone = plan.cron_timezone
    row.misfire_policy = plan.misfire_policy.value
    row.remark = remark
    row.updated_at = now


def _timing_task(session: Session, scope: Scope, task_id: str) -> TaskRow:
    task = get_task_row(session, scope, task_id)
    if task.task_type != TaskType.TIMING:
        raise InvalidParameters(detail="scheduled plans apply to TIMING tasks only")
    return task


def create_dispatches(
    rt: Runtime, scope: Scope, task_id: str, req: TaskDispatchRequest
) -> TaskDispatchResponse:
    plan = _plan(req)
    now = rt.clock_ms()
    try:
        with rt.db.write() as session:
            task = _timing_task(session, scope, task_id)
            if session.scalar(select(DispatchRow.id).where(DispatchRow.task_id == task.id)):
                raise InvalidParameters(
                    detail="the task has a scheduled plan already; use PUT to change it"
                )
            row = DispatchRow(id=new_hex_id(), task_id=task.id, created_at=now)
            _apply(row, plan, req.remark, now)
            session.add(row)
    except IntegrityError as exc:  # a concurrent create won the unique task_id
        raise InvalidParameters(
            detail="the task has a scheduled plan already; use PUT to change it"
        ) from exc
    return _to_wire(row, now)


def show_dispatches(rt: Runtime, scope: Scope, task_id: str) -> TaskDispatchResponse:
    with rt.db.read() as session:
        task = get_task_row(session, scope, task_id)
        row = session.scalar(select(DispatchRow).where(DispatchRow.task_id == task.id))
        if row is None:
            raise DispatchNotFound()
    return _to_wire(row, rt.clock_ms())


def update_dispatches(
    rt: Runtime, scope: Scope, task_id: str, dispatch_id: str, req: TaskDispatchRequest
) -> TaskDispatchResponse:
    plan = _plan(req)
    now = rt.clock_ms()
    with rt.db.write() as session:
        task = _timing_task(session, scope, task_id)
        row = session.scalar(select(DispatchRow).where(DispatchRow.task_id == task.id))
        if row is None or row.id != dispatch_id:
            raise DispatchNotFound()
        if req.misfire_policy is None:  # clients that do not know the extension keep it
            plan = replace(plan, misfire_policy=MisfirePolicy(row.misfire_policy))
        _apply(row, plan, req.remark, now)
    return _to_wire(row, now)
