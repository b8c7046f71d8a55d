"""The control loops of openfdi's processes, each on the loop base (engine/loops.py):

- in `openfdi serve`, the supervisor's reconciler (every `interval_s`: closes runs whose lease
  expired, stops runs of stopped tasks, starts REALTIME ones) and the scheduler's fire loop (wakes
  for the planner's next fire and hands the runs it creates to the executor);
- in an `openfdi worker` process, the claim loop (reserves runs nobody has claimed, as many as its
  executor has room for, and stops its runs when the database says so).

They reconcile from the database, so they converge whoever changed the desired state (this
process, another server, the admin CLI) and after any restart. What they do with a run is the
runs service's (services/runs.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased

from openfdi.domain.states import ACTIVE_RUN_STATES, DesiredState, RunState, RunTrigger, TaskType
from openfdi.engine.backoff import restart_delay_ms
from openfdi.engine.loops import LoopService
from openfdi.services import runs as runs_service
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import RunRow, TaskRow

log = logging.getLogger(__name__)
_ACTIVE = tuple(s.value for s in ACTIVE_RUN_STATES)
STARTING_GRACE_MS = 30_000
"""How long a created run may wait for an executor to claim it before it is closed (and how far
beyond its lease a broker-carried run waits for its message to come back)."""


@dataclass
class Worker:
    """The loop of an `openfdi worker` process: reserves runs nobody has claimed, as many as
    its executor has room for (so that worker processes never race for one run), and
    stops its runs when asked (from the database, since the request reached another process)."""

    rt: Runtime
    poll_s: float = 0.05
    stop_check_s: float = 0.1

    def run(self, closing: threading.Event) -> None:
        """Claim runs on this thread until `closing` is set."""
        executor = self.rt.start_local_engine()
        log.info("worker %d claiming runs as %s", os.getpid(), executor.owner)
        checked = 0.0

        def claim_pass() -> None:
            nonlocal checked
            room = executor.room()
            if room:
                reserved = runs.reserve_unclaimed(
                    self.rt.db, executor.owner, room, self.rt.clock_ms(), executor.lease_ms
                )
                for run_id, task_id in reserved:
                    runs_service.submit_created(self.rt, run_id, task_id)
            if time.monotonic() - checked >= self.stop_check_s:
                checked = time.monotonic()
                runs_service.stop_unwanted_runs(self.rt, executor)

        LoopService("worker", _none_after(claim_pass), self.poll_s, closing=closing).run()


class FirePlanner(Protocol):
    """Turns due fires of scheduled plans into runs (the scheduler layer implements it)."""

    def due_runs(self, now_ms: int) -> list[tuple[str, str]]:
        """Create the runs of every fire due by `now_ms`; return their (run_id, task_id)."""
        ...

    def next_due_ms(self) -> int | None:
        """The earliest fire the planner holds (None: none armed)."""
        ...


@dataclass
class Supervisor:
    """Keeps runs in line with desired state, in two loops on threads of `openfdi serve`.

    The reconciler (every `interval_s`) closes runs whose lease expired, stops runs of stopped
    tasks and starts REALTIME ones. The fire loop wakes for the planner's next fire (at most
    every `interval_s`, at least `fire_spacing_s` apart, so fires due close together are
    handled in one transaction) and hands the runs it creates to the executor, whose workers
    claim them (or leaves them to worker processes): a slow run start never delays a fire.
    """

    rt: Runtime
    interval_s: float = 0.25
    planner: FirePlanner | None = None
    fire_spacing_s: float = 0.1

    def __post_init__(self) -> None:
        self._loops = [LoopService("supervisor", _none_after(self.reconcile), self.interval_s)]
        if self.planner is not None:
            self._loops.append(
                LoopService("scheduler", self._fire_step, self.interval_s, first_wait_s=0.0)
            )

    def start(self) -> None:
        for loop in self._loops:
            loop.start()

    def close(self) -> None:
        for loop in self._loops:
            loop.closing.set()
        for loop in self._loops:
            loop.close()

    def running(self) -> bool:
        """Every loop is alive (`/readyz`)."""
        return all(loop.alive() for loop in self._loops)

    def _fire_step(self) -> float:
        self.fire_due()
        return self._until_next_fire()

    def _until_next_fire(self) -> float:
        head = self.planner.next_due_ms() if self.planner is not None else None
        if head is None:
            return self.interval_s
        wait = (head - self.rt.clock_ms()) / 1000
        return min(self.interval_s, max(self.fire_spacing_s, wait))

    def fire_due(self) -> None:
        """Create the runs of the fires due now and hand them to the executor."""
        if self.planner is not None:
            for run_id, task_id in self.planner.due_runs(self.rt.clock_ms()):
                runs_service.submit_created(self.rt, run_id, task_id)

    def reconcile(self) -> None:
        now = self.rt.clock_ms()
        for run_id in runs.expire_leases(self.rt.db, now, STARTING_GRACE_MS):
            log.warning("run %s closed as interrupted: its lease expired", run_id)
        if self.rt.executor is not None:
            runs_service.stop_unwanted_runs(self.rt, self.rt.executor)
        start_realtime_runs(self.rt, now)


def start_realtime_runs(rt: Runtime, now: int, task_ids: Sequence[str] | None = None) -> None:
    """Start a run for each started REALTIME task (of `task_ids`, or all) that has none and
    needs one, judged by the supervisor's own runs only: a manual run (one catch-up pass)
    neither stands for the following run nor stops it from being started once it ends. A task
    whose runs keep failing is started again later each time (engine/backoff.py)."""
    latest = aliased(RunRow)
    mine = RunRow.trigger == RunTrigger.SUPERVISOR.value
    newest = (
        select(func.max(RunRow.created_at))
        .where(RunRow.task_id == TaskRow.id, mine)
        .correlate(TaskRow)
        .scalar_subquery()
    )
    active = select(RunRow.id).where(RunRow.task_id == TaskRow.id, RunRow.state.in_(_ACTIVE))
    query = (
        select(TaskRow.id, TaskRow.updated_at, latest.state, latest.created_at, latest.ended_at)
        .outerjoin(
            latest,
            and_(
                latest.task_id == TaskRow.id,
                latest.trigger == RunTrigger.SUPERVISOR.value,
                latest.created_at == newest,
            ),
        )
        .where(
            TaskRow.task_type == TaskType.REALTIME.value,
            TaskRow.status == DesiredState.RUNNING.value,
            ~active.exists(),
        )
    )
    if task_ids is not None:
        query = query.where(TaskRow.id.in_(task_ids))
    with rt.db.read() as session:
        candidates = session.execute(query).all()
    for task_id, changed, state, created, ended in candidates:
        due = (
            state is None
            or created < changed
            or state == RunState.INTERRUPTED
            or (
                state == RunState.FAILED
                and now >= (ended or 0) + restart_delay_ms(runs.failed_in_a_row(rt.db, task_id))
            )
        )
        if not due:
            continue
        try:
            # Only if no run of the supervisor's came since this read: the batch start's pass
            # and the loop's may judge the same task at once, and a run the other started may
            # already have failed, whose backoff this read did not see.
            run_id = runs_service.start_run(rt, task_id, RunTrigger.SUPERVISOR, created)
            log.info("started realtime run %s of task %s", run_id, task_id)
        except runs.RunConflictError:
            pass  # someone else started it in the meantime


def _none_after(step: Callable[[], None]) -> Callable[[], float | None]:
    """A step that keeps the loop's interval."""

    def stepped() -> float | None:
        step()
        return None

    return stepped
