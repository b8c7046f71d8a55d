"""Runs: run now, terminate, run history, and what the control loops (services/control_loops.py)
do with runs: build a run's spec, hand a created run to the executor, stop the runs nobody wants
any more."""

from __future__ import annotations

import logging

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import aliased

from openfdi.domain.scope import Scope
from openfdi.domain.states import (
    RUN_TO_EXECUTE,
    DesiredState,
    RunState,
    RunTrigger,
    TaskType,
)
from openfdi.domain.task_detail import parse_task_detail
from openfdi.engine.cdc import CdcRunSpec
from openfdi.engine.executing import Executor
from openfdi.engine.spec import Endpoint, RunSpec
from openfdi.errors import TaskAlreadyRunning, TaskStartFailed
from openfdi.services import cdc, run_steps
from openfdi.services.datasources import decrypt_content
from openfdi.services.lookup import get_task_row
from openfdi.services.paging import numbered_page
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import CheckpointRow, DatasourceRow, DirtyRowRow, RunRow, TaskRow
from openfdi.wire.runs import (
    DirtyRow,
    ListDirtyRowsResponse,
    ListMonitorLogResponse,
    RunTaskResponse,
    StopTaskResponse,
    TaskMonitorLog,
)

log = logging.getLogger(__name__)
STOP_MARGIN_MS = 3_000
"""Beyond the executor's stop deadline: its cancel-then-abandon margin (2 s) and a second more.
A live executor ends a stopped run itself well before; the database deadline is for runs whose
executor is gone or stuck."""


def stop_deadline_ms(rt: Runtime) -> int:
    """How long a stopped run may stay `stopping` before the supervisor ends it CANCELLED."""
    return int(rt.settings.stop_deadline_seconds * 1000) + STOP_MARGIN_MS


def engine_here(rt: Runtime) -> bool:
    """Runs started here are executed: by this process or by its worker processes."""
    return rt.executor is not None or rt.runs_in_worker_processes


def _require_engine(rt: Runtime) -> None:
    """Runs start only where something executes them: this process or its worker processes."""
    if not engine_here(rt):
        raise TaskStartFailed(detail="the engine is not running in this server")


_source, _target = aliased(DatasourceRow), aliased(DatasourceRow)
_SPEC = (
    select(
        RunRow.trigger,
        TaskRow.task_type,
        TaskRow.task_detail,
        _source.type,
        _source.content,
        _target.type,
        _target.content,
        CheckpointRow.watermark,
        TaskRow.ext_type,
    )
    .join(_source, _source.id == TaskRow.source_datasource_id)
    .join(_target, _target.id == TaskRow.target_datasource_id)
    .outerjoin(CheckpointRow, CheckpointRow.task_id == TaskRow.id)
    .join(RunRow, RunRow.task_id == TaskRow.id)
    .where(TaskRow.id == bindparam("task_id"), RunRow.id == bindparam("run_id"))
)


def build_spec(rt: Runtime, run_id: str, task_id: str) -> RunSpec | CdcRunSpec:
    """What the run needs, in one read (every scheduled fire pays for it)."""
    with rt.db.lookup() as conn:
        row = conn.execute(_SPEC, {"task_id": task_id, "run_id": run_id}).one()
    trigger, task_type, detail, source_type, source, target_type, target, watermark, ext = row
    if ext == "CDC":  # a composite task: its own run kind (engine/cdc.py)
        return cdc.build_cdc_spec(rt, run_id, task_id, trigger)
    return RunSpec(
        run_id=run_id,
        task_id=task_id,
        task_type=TaskType(task_type),
        detail=parse_task_detail(detail),
        source=Endpoint(source_type, decrypt_content(rt, source)),
        target=Endpoint(target_type, decrypt_content(rt, target)),
        watermark=watermark,
        follows_source=trigger == RunTrigger.SUPERVISOR and task_type == TaskType.REALTIME,
    )


def start_run(
    rt: Runtime,
    task_id: str,
    trigger: RunTrigger,
    newest_seen: int | runs.NotChecked | None = runs.NOT_CHECKED,
) -> str:
    """Create and submit a run; RunConflictError if the task has an active run, or a run of
    `trigger` newer than `newest_seen` (runs.create_run)."""
    _require_engine(rt)
    run_id = runs.create_run(rt.db, task_id, trigger, rt.clock_ms(), newest_seen=newest_seen)
    submit_created(rt, run_id, task_id)
    return run_id


def submit_created(rt: Runtime, run_id: str, task_id: str) -> None:
    """Hand a created run to this process's executor, which claims and describes it on one of
    its workers (a run that cannot be described fails there with the reason). Without one,
    the run waits in the database for a worker process to claim it (`Worker`)."""
    if rt.executor is not None:
        rt.executor.submit(run_id, lambda: build_spec(rt, run_id, task_id))


def run_task(rt: Runtime, scope: Scope, task_id: str) -> RunTaskResponse:
    """One execution now, whatever the desired state (fdi-api.md H.2). It copies what the
    source holds now and ends, a REALTIME task's too (one catch-up pass): only the
    supervisor's runs of a started REALTIME task follow the source (docs/runs.md)."""
    with rt.db.read() as session:
        get_task_row(session, scope, task_id)
    try:
        return RunTaskResponse(run_id=start_run(rt, task_id, RunTrigger.MANUAL))
    except runs.RunConflictError as exc:
        raise TaskAlreadyRunning() from exc


def stop_task(rt: Runtime, scope: Scope, task_id: str) -> StopTaskResponse:
    """Terminate the run in progress, if any, whoever started it, without changing the
    desired state."""
    with rt.db.read() as session:
        get_task_row(session, scope, task_id)
    stop_local(rt, runs.request_stop(rt.db, task_id, rt.clock_ms(), stop_deadline_ms(rt)))
    return StopTaskResponse(message="success")


def stop_local(rt: Runtime, run_ids: list[str]) -> None:
    """Tell this process's executor at once about runs just marked stopping (an executor
    elsewhere sees the mark at its next check, `stop_unwanted_runs`)."""
    if rt.executor is not None:
        for run_id in run_ids:
            rt.executor.stop(run_id)


def _monitor_log(row: RunRow, kinds: tuple[str, str]) -> TaskMonitorLog:
    size, unit = run_steps.size_with_unit(row.data_size_bytes)
    state = RunState(row.state)
    spend = (row.ended_at - row.started_at) if row.ended_at and row.started_at else None
    return TaskMonitorLog(
        id=row.id,
        start_time=row.started_at,
        dispatch_time=row.fire_time or row.created_at,
        end_time=row.ended_at,
        execute_status=RUN_TO_EXECUTE[state].value,
        position=row.position,
        position_status=row.position_status,
        status=1 if state.is_active else 0,
        dirty_data_count=row.dirty_data_count,
        data_count=row.data_count,
        data_size=size,
        data_size_unit=unit,
        spend_time=spend,
        read_spend_time=row.read_ms,
        write_spend_time=row.write_ms,
        remarks=row.remarks,
        detail_logs=run_steps.detail_logs(row, *kinds),
    )


def list_monitor_log(
    rt: Runtime,
    scope: Scope,
    task_id: str,
    *,
    offset: int | None,
    limit: int | None,
    begin_time: int | None,
    end_time: int | None,
) -> ListMonitorLogResponse:
    page = numbered_page(offset, limit)
    # A parallel copy's slice runs are parts of their run, which sums them: not runs here.
    where = [RunRow.task_id == task_id, RunRow.parent_run_id.is_(None)]
    if begin_time is not None:
        where.append(RunRow.created_at >= begin_time)
    if end_time is not None:
        where.append(RunRow.created_at <= end_time)
    with rt.db.read() as session:
        kinds = run_steps.endpoint_types(session, get_task_row(session, scope, task_id))
        total = session.scalar(select(func.count()).select_from(RunRow).where(*where)) or 0
        rows = session.scalars(
            select(RunRow)
            .where(*where)
            .order_by(RunRow.created_at.desc(), RunRow.id.desc())
            .offset(page.offset)
            .limit(page.limit)
        ).all()
    entities = [_monitor_log(r, kinds) for r in rows]
    return ListMonitorLogResponse(total=total, size=len(entities), entities=entities)


def list_dirty_rows(
    rt: Runtime, scope: Scope, task_id: str, run_id: str, offset: int | None, limit: int | None
) -> ListDirtyRowsResponse:
    page = numbered_page(offset, limit)
    with rt.db.read() as session:
        get_task_row(session, scope, task_id)
        # A run's own rejected rows, and those of its slice runs (a parallel copy's).
        mine = or_(RunRow.id == run_id, RunRow.parent_run_id == run_id)
        where = [mine, RunRow.task_id == task_id]
        joined = select(DirtyRowRow).join(RunRow, RunRow.id == DirtyRowRow.run_id).where(*where)
        total = session.scalar(select(func.count()).select_from(joined.subquery())) or 0
        rows = session.scalars(
            joined.order_by(DirtyRowRow.id).offset(page.offset).limit(page.limit)
        ).all()
    entities = [DirtyRow(row=r.row, reason=r.reason, created_at=r.created_at) for r in rows]
    return ListDirtyRowsResponse(total=total, size=len(entities), entities=entities)


def stop_unwanted_runs(rt: Runtime, executor: Executor) -> None:
    """Stop the executor's runs that were asked to stop or whose task was stopped since."""
    mine = executor.active_run_ids()
    if not mine:
        return
    with rt.db.read() as session:
        rows = session.execute(
            select(
                RunRow.id,
                RunRow.state,
                RunRow.trigger,
                RunRow.created_at,
                TaskRow.status,
                TaskRow.updated_at,
            )
            .join(TaskRow, TaskRow.id == RunRow.task_id)
            .where(RunRow.id.in_(mine))
        ).all()
    for run_id, state, trigger, created, desired, changed in rows:
        # A run older than the task's last change while the task is stopped was stopped by
        # that change; a manual run started after it is left alone. The supervisor's runs
        # exist only for a started task: one created just as the task was stopped goes too.
        stopped = desired == DesiredState.STOPPED
        stopped_after = stopped and (changed >= created or trigger == RunTrigger.SUPERVISOR)
        if state == RunState.STOPPING or stopped_after:
            executor.stop(run_id)
