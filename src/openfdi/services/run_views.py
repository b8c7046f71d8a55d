"""Read models of the web console: the overview, a task's run history and live progress, a run.

Everything here reads through the same scoped look-ups as the API (`get_task_row`), so a task
or run of another project or instance does not exist (TaskNotFound, a 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, or_, select

from openfdi.domain.scope import Scope
from openfdi.domain.states import ExecuteStatus, RunState
from openfdi.domain.task_detail import TaskDetailError, parse_task_detail
from openfdi.errors import FdiError, TaskNotFound
from openfdi.services import runs, tasks
from openfdi.services.lookup import get_task_row
from openfdi.services.runtime import Runtime
from openfdi.store.tables import DirtyRowRow, RunRow
from openfdi.wire.dispatches import TaskDispatchResponse
from openfdi.wire.runs import TaskMonitorLog
from openfdi.wire.tasks import CountTasksResponse, TaskMonitorInfo

MONITORS_SHOWN = 200
HISTORY_SHOWN = 50
DIRTY_SHOWN = 200


@dataclass(frozen=True, slots=True)
class Overview:
    counts: CountTasksResponse
    monitors: list[TaskMonitorInfo]
    total: int


_ORDER = {ExecuteStatus.ERROR.value: 0, ExecuteStatus.RUNNING.value: 1}


def overview(rt: Runtime, scope: Scope) -> Overview:
    """count_tasks and the task monitors, failing tasks first (then running, then the rest)."""
    counts = tasks.count_tasks(rt, scope)
    listed = tasks.list_monitor_infos(
        rt, scope, offset=1, limit=MONITORS_SHOWN, task_name=None, execute_status=None
    )
    monitors = sorted(listed.entities, key=lambda m: _ORDER.get(m.execute_status, 2))
    return Overview(counts, monitors, listed.total)


@dataclass(frozen=True, slots=True)
class ChartPoint:
    start_ms: int
    rows: int
    seconds: float
    failed: bool


def history(rt: Runtime, scope: Scope, task_id: str) -> tuple[list[TaskMonitorLog], int]:
    """The latest runs (newest first) and how many there are in all."""
    page = runs.list_monitor_log(
        rt, scope, task_id, offset=1, limit=HISTORY_SHOWN, begin_time=None, end_time=None
    )
    return page.entities, page.total


def chart_points(logs: list[TaskMonitorLog]) -> list[ChartPoint]:
    """Rows and duration per finished or running run, oldest first, failures marked."""
    points = []
    for log in reversed(logs):
        start = log.start_time or log.dispatch_time
        if start is None:
            continue
        spent = log.spend_time or 0
        points.append(
            ChartPoint(start, log.data_count, spent / 1000, log.execute_status == "ERROR")
        )
    return points


@dataclass(frozen=True, slots=True)
class Progress:
    run_id: str | None
    state: str | None
    active: bool
    rows: int
    dirty: int
    elapsed_s: float | None
    expected_rows: int | None
    """Rows the run should reach, where known: the row count of the last successful full run
    (a task without an incremental column reads the whole selection each time)."""
    percent: float | None
    eta_s: float | None
    remarks: str | None


_LATEST_RUN = select(RunRow).where(
    RunRow.state != RunState.SKIPPED.value,
    RunRow.parent_run_id.is_(None),  # a parallel copy's slice runs are parts of their run
)


def progress(rt: Runtime, scope: Scope, task_id: str) -> Progress:
    now = rt.clock_ms()
    with rt.db.read() as session:
        task = get_task_row(session, scope, task_id)
        run = session.scalar(
            _LATEST_RUN.where(RunRow.task_id == task.id)
            .order_by(RunRow.created_at.desc(), RunRow.id.desc())
            .limit(1)
        )
        expected = None
        if not _incremental(task.task_detail):
            expected = session.scalar(
                select(RunRow.data_count)
                .where(
                    RunRow.task_id == task.id,
                    RunRow.state == RunState.SUCCEEDED.value,
                    RunRow.parent_run_id.is_(None),
                )
                .order_by(RunRow.created_at.desc(), RunRow.id.desc())
                .limit(1)
            )
    if run is None:
        return Progress(None, None, False, 0, 0, None, expected, None, None, None)
    state = RunState(run.state)
    end = run.ended_at or now
    elapsed = (end - run.started_at) / 1000 if run.started_at else None
    percent = eta = None
    if expected and state.is_active:
        percent = min(100.0, 100.0 * run.data_count / expected)
        if elapsed and run.data_count:
            rate = run.data_count / elapsed
            eta = max(0.0, (expected - run.data_count) / rate)
    elif state is RunState.SUCCEEDED:
        percent = 100.0
    return Progress(
        run.id,
        state.value,
        state.is_active,
        run.data_count,
        run.dirty_data_count,
        elapsed,
        expected,
        percent,
        eta,
        run.remarks,
    )


def _incremental(task_detail: str) -> bool:
    try:
        return parse_task_detail(task_detail).incremental_column is not None
    except TaskDetailError:
        return False


@dataclass(frozen=True, slots=True)
class DirtyView:
    row: str
    reason: str
    created_at: int


@dataclass(frozen=True, slots=True)
class RunView:
    id: str
    task_id: str
    trigger: str
    state: str
    fire_time: int | None
    created_at: int
    started_at: int | None
    ended_at: int | None
    data_count: int
    dirty_data_count: int
    data_size_bytes: int
    read_ms: int
    write_ms: int
    position: str | None
    remarks: str | None
    dirty_rows: list[DirtyView]


def _family(run_id: str) -> Select[str]:
    """The run and its slice runs (a parallel copy's), whose rejected rows are the run's."""
    return select(RunRow.id).where(or_(RunRow.id == run_id, RunRow.parent_run_id == run_id))


def run_view(rt: Runtime, scope: Scope, task_id: str, run_id: str) -> RunView:
    """One run of the task with its refused rows (the first DIRTY_SHOWN); TaskNotFound when the
    task is not the caller's or the run is not the task's."""
    with rt.db.read() as session:
        get_task_row(session, scope, task_id)
        run = session.get(RunRow, run_id)
        if run is None or run.task_id != task_id:
            raise TaskNotFound("The run does not exist.")
        dirty = session.scalars(
            select(DirtyRowRow)
            .where(DirtyRowRow.run_id.in_(_family(run.id)))
            .order_by(DirtyRowRow.id)
            .limit(DIRTY_SHOWN)
        ).all()
        return RunView(
            run.id,
            run.task_id,
            run.trigger,
            run.state,
            run.fire_time,
            run.created_at,
            run.started_at,
            run.ended_at,
            run.data_count,
            run.dirty_data_count,
            run.data_size_bytes,
            run.read_ms,
            run.write_ms,
            run.position,
            run.remarks,
            [DirtyView(d.row, d.reason, d.created_at) for d in dirty],
        )


_PERIOD_WORDS = {"MIN": "minute", "HOUR": "hour", "DAY": "day", "WEEK": "week", "MON": "month"}


def plan_in_words(plan: TaskDispatchResponse) -> str:
    """ "Every 2 days from 2026-01-01 02:00 UTC" or the cron described in English."""
    start = datetime.fromtimestamp(plan.start_datetime / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if plan.use_quartz_cron and plan.cron:
        from cron_descriptor import get_description  # imported on use: only cron plans need it

        try:
            words = str(get_description(plan.cron))
        except Exception:  # the library refuses a few Quartz forms the scheduler accepts
            words = f"cron {plan.cron}"
        return f"{words} ({plan.cron_timezone}), from {start}"
    unit = _PERIOD_WORDS.get(plan.period or "", (plan.period or "").lower())
    n = plan.dispatch_interval or 1
    every = f"every {unit}" if n == 1 else f"every {n} {unit}s"
    return f"{every.capitalize()} from {start}"


def error_text(exc: FdiError) -> str:
    return f"{exc.code}: {exc.message}"
