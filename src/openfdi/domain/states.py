"""Task and run states, and the transition table that start, stop and run obey.

A task has a *desired state* (`status`: 0 stopped, 1 running), toggled by start and stop, and a
history of *runs* (one execution each). `execute_status` on the wire is derived from the latest
run, never stored on the task, so it cannot drift from what really happened.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TaskType(enum.StrEnum):
    REALTIME = "REALTIME"
    TIMING = "TIMING"


class DesiredState(enum.IntEnum):
    STOPPED = 0
    RUNNING = 1

    @property
    def wire_name(self) -> str:
        """TaskBasicRsp spells the state as a string (fdi-api.md H.4)."""
        return "running" if self is DesiredState.RUNNING else "stop"


class RunState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_RUN_STATES


ACTIVE_RUN_STATES: frozenset[RunState] = frozenset(
    {RunState.STARTING, RunState.RUNNING, RunState.STOPPING}
)
"""Every active state has an exit with a deadline (store/runs.py, drawn in docs/runs.md):
`starting` ends by the start grace or the reservation's expiry, `running` by its lease, and
`stopping` by its stop deadline (CANCELLED) or its lease, whichever comes first."""


class RunTrigger(enum.StrEnum):
    """Who created a run. Only the supervisor's runs of a started REALTIME task follow their
    source; every other run (a manual `run`, a scheduled fire) copies what is there and ends."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    SUPERVISOR = "supervisor"


class ExecuteStatus(enum.StrEnum):
    UNSTARTED = "UNSTARTED"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    CANCELLED = "CANCELLED"
    ERROR = "ERROR"


RUN_TO_EXECUTE: dict[RunState, ExecuteStatus] = {
    RunState.STARTING: ExecuteStatus.RUNNING,
    RunState.RUNNING: ExecuteStatus.RUNNING,
    RunState.STOPPING: ExecuteStatus.RUNNING,
    RunState.SUCCEEDED: ExecuteStatus.SUCCESS,
    RunState.FAILED: ExecuteStatus.ERROR,
    RunState.CANCELLED: ExecuteStatus.CANCELLED,
    RunState.INTERRUPTED: ExecuteStatus.ERROR,
    RunState.SKIPPED: ExecuteStatus.CANCELLED,
}


def execute_status(
    task_type: TaskType, desired: DesiredState, latest_run: RunState | None
) -> ExecuteStatus:
    """What the FDI API reports as `execute_status` for a task.

    An armed TIMING task with no run in progress is WAITING for its next fire (fdi-api.md H.2);
    otherwise the latest run decides, and a task that never ran is UNSTARTED.
    """
    if latest_run is not None and latest_run.is_active:
        return ExecuteStatus.RUNNING
    if task_type is TaskType.TIMING and desired is DesiredState.RUNNING:
        return ExecuteStatus.WAITING
    if latest_run is None:
        return ExecuteStatus.UNSTARTED
    return RUN_TO_EXECUTE[latest_run]


class Action(enum.StrEnum):
    START = "start"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Transition:
    """Outcome of applying an action to a task's desired state."""

    new_state: DesiredState
    changed: bool


# The whole table: start and stop are idempotent (fdi-api.md H.1.6).
TRANSITIONS: dict[tuple[DesiredState, Action], Transition] = {
    (DesiredState.STOPPED, Action.START): Transition(DesiredState.RUNNING, changed=True),
    (DesiredState.RUNNING, Action.START): Transition(DesiredState.RUNNING, changed=False),
    (DesiredState.RUNNING, Action.STOP): Transition(DesiredState.STOPPED, changed=True),
    (DesiredState.STOPPED, Action.STOP): Transition(DesiredState.STOPPED, changed=False),
}


def apply(state: DesiredState, action: Action) -> Transition:
    return TRANSITIONS[(state, action)]
