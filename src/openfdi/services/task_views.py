"""Read-side SQL for tasks: the latest run of each task and the derived `execute_status`.

`execute_status` is never stored; it is computed from the desired state and the latest run,
in SQL here (so lists can filter and count on it) from the same table the domain uses.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, literal, select
from sqlalchemy.orm import aliased

from openfdi.domain.states import (
    ACTIVE_RUN_STATES,
    RUN_TO_EXECUTE,
    DesiredState,
    ExecuteStatus,
    RunState,
    TaskType,
)
from openfdi.store.tables import RunRow, TaskRow

_latest = aliased(RunRow)


def _latest_run(column: Any) -> Any:
    """Correlated scalar subquery: `column` of the task's most recent run (or NULL).

    A skipped fire is a monitor-log entry, not a run: it never hides the run in progress that
    caused it, nor the last real outcome. Nor is a slice run (a part of a parallel copy's run,
    created after it): the run speaks for its slices.
    """
    return (
        select(column)
        .where(
            _latest.task_id == TaskRow.id,
            _latest.state != RunState.SKIPPED.value,
            _latest.parent_run_id.is_(None),
        )
        .order_by(_latest.created_at.desc(), _latest.id.desc())
        .limit(1)
        .correlate(TaskRow)
        .scalar_subquery()
    )


def latest_run_state() -> Any:
    return _latest_run(_latest.state)


def latest_run_started() -> Any:
    return _latest_run(_latest.started_at)


def latest_run_position() -> Any:
    return _latest_run(_latest.position)


def execute_status_expr(latest: Any) -> Any:
    """SQL CASE equal to `domain.states.execute_status` (a unit test checks they agree)."""
    active = [s.value for s in ACTIVE_RUN_STATES]
    whens: list[tuple[Any, Any]] = [
        (latest.in_(active), literal(ExecuteStatus.RUNNING.value)),
        (
            and_(
                TaskRow.task_type == TaskType.TIMING.value,
                TaskRow.status == DesiredState.RUNNING.value,
            ),
            literal(ExecuteStatus.WAITING.value),
        ),
        (latest.is_(None), literal(ExecuteStatus.UNSTARTED.value)),
    ]
    whens += [
        (latest == run_state.value, literal(status.value))
        for run_state, status in RUN_TO_EXECUTE.items()
        if run_state not in ACTIVE_RUN_STATES
    ]
    return case(*whens, else_=literal(ExecuteStatus.UNSTARTED.value))
