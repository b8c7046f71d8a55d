"""The planner: every supervisor tick, the runs of the fires that fell due (services.control_loops).

Which fires are due is derived from the database alone, so a restart, a second server or a
crashed tick lose nothing:

- a task is *armed* while it is started (`tasks.status` 1), TIMING, and has a plan;
- its fires are handled in order; the last handled fire is the newest `runs.fire_time` of the
  task (runs and skipped entries alike), and fires before the task was started or its plan last
  changed (`tasks.updated_at`, `dispatches.updated_at`) are never handled;
- each handled fire becomes one row of `runs` with its `fire_time`: a run (trigger `schedule`)
  or a `skipped` entry with the reason. `ux_runs_fire` (task, fire time) makes a fire recorded
  twice a no-op, whoever races; `ux_runs_active_task` makes a second active run impossible.

A tick stays cheap with thousands of armed tasks: the planner keeps each armed task's next fire
in memory (a heap), keyed by the task's and plan's `updated_at`, and reads only the rows that
changed since its last pass (two index range scans) plus a full key scan every `resync_s`.
The cron arithmetic of a task runs once per fire, never per tick. Writes happen only when a
fire is due: one transaction per tick re-reads the due tasks (locked against a concurrent
stop on PostgreSQL), so a stopped task never fires even if this process has not noticed yet.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from openfdi.domain.ids import new_hex_id
from openfdi.domain.schedule import Plan, PlanError, stored_plan
from openfdi.domain.states import ACTIVE_RUN_STATES, DesiredState, RunState, RunTrigger, TaskType
from openfdi.scheduler.misfire import (
    COUNT_LIMIT,
    NEWEST_NEEDED,
    Decision,
    DueFires,
    Skip,
    decide,
    in_progress,
)
from openfdi.store.db import Database
from openfdi.store.tables import DispatchRow, RunRow, TaskRow

log = logging.getLogger(__name__)

_ACTIVE = tuple(s.value for s in ACTIVE_RUN_STATES)
_CHUNK = 500
TRIGGER = RunTrigger.SCHEDULE.value

Key = tuple[int, int]
"""What a task's cached schedule depends on: (tasks.updated_at, dispatches.updated_at)."""
Fire = tuple[str, int]
"""A fire's identity: (task_id, fire_time)."""


@dataclass(slots=True)
class _Armed:
    task_id: str
    key: Key
    plan: Plan
    floor: int
    """Every fire at or before this one is handled (or is before the task was armed)."""
    cursor: Iterator[int]
    next_fire: int | None
    generation: int


@dataclass(slots=True)
class PlannerStats:
    """Running totals since the planner started (logged every `stats_interval_s`)."""

    ticks: int = 0
    busy_ticks: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    max_tick_s: float = 0.0
    runs: int = 0
    skipped: int = 0
    reloads: int = 0
    resyncs: int = 0
    armed: int = 0
    tick_times: list[float] = field(default_factory=list)

    def line(self) -> str:
        recent = sorted(self.tick_times)
        p99 = recent[max(0, int(len(recent) * 0.99) - 1)] * 1000 if recent else 0.0
        return (
            f"scheduler stats: armed={self.armed} ticks={self.ticks} busy_ticks={self.busy_ticks} "
            f"cpu_s={self.cpu_s:.3f} wall_s={self.wall_s:.3f} tick_p99_ms={p99:.1f} "
            f"tick_max_ms={self.max_tick_s * 1000:.1f} runs={self.runs} skipped={self.skipped} "
            f"reloads={self.reloads} resyncs={self.resyncs}"
        )


class Planner:
    """Implements `services.control_loops.FirePlanner`; called from the fire loop's thread only."""

    def __init__(
        self,
        db: Database,
        *,
        misfire_threshold_ms: int = 60_000,
        resync_s: float = 30.0,
        change_margin_ms: int = 5_000,
        stats_interval_s: float = 60.0,
    ) -> None:
        self.db = db
        self.misfire_threshold_ms = misfire_threshold_ms
        self.resync_ms = int(resync_s * 1000)
        self.change_margin_ms = change_margin_ms
        self.stats_interval_s = stats_interval_s
        self.stats = PlannerStats()
        self._states: dict[str, _Armed] = {}
        self._broken: dict[str, Key] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._generation = 0
        self._last_resync: int | None = None
        self._since = 0
        self._last_log = time.monotonic()

    # --- the seam

    def due_runs(self, now_ms: int) -> list[tuple[str, str]]:
        """Create the runs (and skipped entries) of every fire due by `now_ms`."""
        cpu, wall = time.thread_time(), time.perf_counter()
        busy = False
        try:
            self._refresh(now_ms)
            due = self._pop_due(now_ms)
            created: list[tuple[str, str]] = []
            busy = bool(due)
            for chunk in _chunks(due, _CHUNK):
                created += self._fire(chunk, now_ms)
            return created
        except Exception:
            # Rebuild everything from the database next tick: nothing is lost, as the database
            # is the only record of what was handled.
            self._reset()
            raise
        finally:
            self._account(time.thread_time() - cpu, time.perf_counter() - wall, busy)

    def next_due_ms(self) -> int | None:
        """The earliest next fire in the heap (it may be stale; `due_runs` checks)."""
        return self._heap[0][0] if self._heap else None

    def armed_next_fires(self) -> dict[str, int | None]:
        """Each armed task's next fire as the planner holds it (for tests and diagnostics)."""
        return {task_id: state.next_fire for task_id, state in self._states.items()}

    # --- what is armed

    def _reset(self) -> None:
        self._states.clear()
        self._broken.clear()
        self._heap.clear()
        self._last_resync = None

    def _refresh(self, now: int) -> None:
        """Bring the armed set up to date: all keys every `resync_ms`, else what changed."""
        keys = _ArmedKeys()
        full = self._last_resync is None or now - self._last_resync >= self.resync_ms
        with self.db.read() as session:
            if full:
                keys.read_all(session)
            else:
                keys.read_changed(session, self._since)
        self._since = now - self.change_margin_ms
        if full:
            self._last_resync = now
            self.stats.resyncs += 1
            for task_id in [t for t in self._states if t not in keys.armed]:
                del self._states[task_id]
            for task_id in [t for t in self._broken if t not in keys.armed]:
                del self._broken[task_id]
        for task_id in keys.disarmed:
            self._states.pop(task_id, None)
            self._broken.pop(task_id, None)
        stale = [
            task_id
            for task_id, key in keys.armed.items()
            if (state := self._states.get(task_id)) is None or state.key != key
        ]
        stale = [t for t in stale if self._broken.get(t) != keys.armed[t]]
        if stale:
            self._load(stale)
        self.stats.armed = len(self._states)

    def _load(self, task_ids: Sequence[str]) -> None:
        """(Re)build the schedule of these tasks from the database."""
        self.stats.reloads += len(task_ids)
        found: set[str] = set()
        last_fire = (
            select(func.max(RunRow.fire_time))
            .where(RunRow.task_id == TaskRow.id)
            .correlate(TaskRow)
            .scalar_subquery()
        )
        with self.db.read() as session:
            for chunk in _chunks(task_ids, _CHUNK):
                rows = (
                    session.connection()
                    .execute(
                        select(
                            TaskRow.id,
                            TaskRow.updated_at,
                            DispatchRow.updated_at,
                            DispatchRow.start_datetime,
                            DispatchRow.period,
                            DispatchRow.dispatch_interval,
                            DispatchRow.use_quartz_cron,
                            DispatchRow.cron,
                            DispatchRow.cron_timezone,
                            DispatchRow.misfire_policy,
                            last_fire,
                        )
                        .join(DispatchRow, DispatchRow.task_id == TaskRow.id)
                        .where(TaskRow.id.in_(chunk), *_ARMED)
                    )
                    .all()
                )
                for row in rows:
                    found.add(row[0])
                    self._arm(row)
        for task_id in task_ids:
            if task_id not in found:
                self._states.pop(task_id, None)

    def _arm(self, row: Any) -> None:
        task_id, task_changed, plan_changed = row[0], row[1], row[2]
        key = (task_changed, plan_changed)
        try:
            plan = stored_plan(
                start_datetime_ms=row[3],
                period=row[4],
                dispatch_interval=row[5],
                use_quartz_cron=row[6],
                cron=row[7],
                cron_timezone=row[8],
                misfire_policy=row[9],
            )
        except PlanError as exc:
            log.warning(
                "task %s: its plan cannot be evaluated (%s); it does not fire", task_id, exc
            )
            self._states.pop(task_id, None)
            self._broken[task_id] = key
            return
        self._broken.pop(task_id, None)
        floor = max(row[10] or 0, task_changed, plan_changed)
        self._place(task_id, key, plan, floor)

    def _place(self, task_id: str, key: Key, plan: Plan, floor: int) -> None:
        """Arm a task with its next fire after `floor`."""
        cursor = plan.fires_after(floor)
        self._generation += 1
        state = _Armed(task_id, key, plan, floor, cursor, next(cursor, None), self._generation)
        self._states[task_id] = state
        self._push(state)

    def _push(self, state: _Armed) -> None:
        if state.next_fire is not None:
            heapq.heappush(self._heap, (state.next_fire, state.generation, state.task_id))

    def _pop_due(self, now: int) -> list[str]:
        due: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            fire, generation, task_id = heapq.heappop(heap)
            state = self._states.get(task_id)
            if state is not None and state.generation == generation and state.next_fire == fire:
                due.append(task_id)
        return due

    # --- firing

    def _gather(self, state: _Armed, now: int) -> tuple[DueFires, bool]:
        """The task's due fires; True when the cursor went past them all (it holds the next)."""
        fires: list[int] = []
        fire = state.next_fire
        while fire is not None and fire <= now and len(fires) <= COUNT_LIMIT:
            fires.append(fire)
            fire = next(state.cursor, None)
        if fire is not None and fire <= now:  # too many to count: find the newest directly
            newest = [f for f in state.plan.fires_before(now, NEWEST_NEEDED) if f > fires[-1]]
            return DueFires(newest or fires[-NEWEST_NEEDED:], None, fires[0]), False
        state.next_fire = fire
        return DueFires(fires[-NEWEST_NEEDED:], len(fires), fires[0]), True

    def _fire(self, task_ids: list[str], now: int) -> list[tuple[str, str]]:
        """One transaction: re-check the due tasks, then record their runs and skips."""
        created: list[tuple[str, str]] = []
        outcomes: list[tuple[_Armed, Decision, bool]] = []
        reload: list[str] = []
        with self.db.write() as session:
            current = _current_keys(session, task_ids)
            active = {
                task_id: (run_id, created)
                for task_id, run_id, created in session.connection().execute(
                    select(RunRow.task_id, RunRow.id, RunRow.created_at).where(
                        RunRow.task_id.in_(task_ids),
                        RunRow.state.in_(_ACTIVE),
                        RunRow.parent_run_id.is_(None),  # the run, not its slice runs
                    )
                )
            }
            runs: list[dict[str, Any]] = []
            skips: list[dict[str, Any]] = []
            for task_id in sorted(task_ids):
                state = self._states[task_id]
                if current.get(task_id) != state.key:
                    reload.append(task_id)  # stopped, deleted or changed since it was read
                    continue
                due, past = self._gather(state, now)
                run_id, since = active.get(task_id, (None, None))
                decision = decide(
                    due, state.plan.misfire_policy, now, self.misfire_threshold_ms, run_id, since
                )
                outcomes.append((state, decision, past))
                if decision.run is not None:
                    runs.append(_run_row(task_id, decision.run, now))
                skips += [_skip_row(task_id, s, now) for s in decision.skips]
            started = _insert(session, self.db, runs)
            refused = [r for r in runs if (r["task_id"], r["fire_time"]) not in started]
            if refused:
                # Another scheduler recorded the fire (a no-op), or a run began meanwhile.
                taken = _recorded_fires(session, refused)
                skips += [
                    _skip_row(r["task_id"], Skip(r["fire_time"], in_progress(None)), now)
                    for r in refused
                    if (r["task_id"], r["fire_time"]) not in taken
                ]
            skipped = _insert(session, self.db, skips)
        for (task_id, _fire), run_id in sorted(started.items(), key=lambda item: item[0][1]):
            created.append((run_id, task_id))
        self.stats.runs += len(started)
        self.stats.skipped += len(skipped)
        for state, decision, past in outcomes:
            self._advance(state, decision, past)
        if reload:
            self._load(reload)
        return created

    def _advance(self, state: _Armed, decision: Decision, past: bool) -> None:
        """After the transaction committed: move the task's cursor past what was handled."""
        if decision.through is not None:
            state.floor = decision.through
        if past and not decision.backlog:
            self._requeue(state)  # every due fire is handled; the cursor holds the next one
        else:
            self._place(state.task_id, state.key, state.plan, state.floor)

    def _requeue(self, state: _Armed) -> None:
        self._generation += 1
        state.generation = self._generation
        self._push(state)

    # --- stats

    def _account(self, cpu_s: float, wall_s: float, busy: bool) -> None:
        stats = self.stats
        stats.ticks += 1
        stats.busy_ticks += busy
        stats.cpu_s += cpu_s
        stats.wall_s += wall_s
        stats.max_tick_s = max(stats.max_tick_s, wall_s)
        stats.tick_times.append(wall_s)
        if time.monotonic() - self._last_log >= self.stats_interval_s:
            self._last_log = time.monotonic()
            log.info(stats.line())
            stats.tick_times.clear()


_RUNNING = DesiredState.RUNNING.value
_TIMING = TaskType.TIMING.value
_ARMED = (TaskRow.status == _RUNNING, TaskRow.task_type == _TIMING)


class _ArmedKeys:
    """Armed tasks with their keys, and tasks seen changed but not armed."""

    def __init__(self) -> None:
        self.armed: dict[str, Key] = {}
        self.disarmed: set[str] = set()

    def read_all(self, session: Session) -> None:
        rows = session.connection().execute(
            select(TaskRow.id, TaskRow.updated_at, DispatchRow.updated_at)
            .join(DispatchRow, DispatchRow.task_id == TaskRow.id)
            .where(*_ARMED)
        )
        self.armed = {task_id: (t, d) for task_id, t, d in rows}

    def read_changed(self, session: Session, since: int) -> None:
        columns = (
            TaskRow.id,
            TaskRow.status,
            TaskRow.task_type,
            TaskRow.updated_at,
            DispatchRow.updated_at,
        )
        joined = select(*columns).outerjoin(DispatchRow, DispatchRow.task_id == TaskRow.id)
        rows = [
            *session.connection().execute(joined.where(TaskRow.updated_at > since)),
            *session.connection().execute(joined.where(DispatchRow.updated_at > since)),
        ]
        for task_id, status, task_type, task_changed, plan_changed in rows:
            if status == _RUNNING and task_type == _TIMING and plan_changed is not None:
                self.armed[task_id] = (task_changed, plan_changed)
            else:
                self.disarmed.add(task_id)


def _current_keys(session: Session, task_ids: list[str]) -> dict[str, Key]:
    """The keys of those of `task_ids` still armed, read under a share lock of the task rows.

    On PostgreSQL the lock makes a concurrent stop wait for this transaction (or this one for
    the stop): a run created here is older than the stop, and the supervisor stops it. SQLite
    serialises writers anyway.
    """
    rows = session.connection().execute(
        select(TaskRow.id, TaskRow.updated_at, DispatchRow.updated_at)
        .join(DispatchRow, DispatchRow.task_id == TaskRow.id)
        .where(TaskRow.id.in_(task_ids), *_ARMED)
        .order_by(TaskRow.id)
        .with_for_update(read=True, of=TaskRow)
    )
    return {task_id: (t, d) for task_id, t, d in rows}


def _run_row(task_id: str, fire: int, now: int) -> dict[str, Any]:
    return {
        "id": new_hex_id(),
        "task_id": task_id,
        "trigger": TRIGGER,
        "fire_time": fire,
        "state": RunState.STARTING.value,
        "epoch": 0,
        "created_at": now,
        "ended_at": None,
        "remarks": None,
    }


def _skip_row(task_id: str, skip: Skip, now: int) -> dict[str, Any]:
    return {
        "id": new_hex_id(),
        "task_id": task_id,
        "trigger": TRIGGER,
        "fire_time": skip.fire_time,
        "state": RunState.SKIPPED.value,
        "epoch": 0,
        "created_at": now,
        "ended_at": now,
        "remarks": skip.remarks,
    }


_RUNS = cast(Table, RunRow.__table__)
_RETURNED = (_RUNS.c.task_id, _RUNS.c.fire_time, _RUNS.c.id)
_INSERT_IF_FREE = {
    # Each unless it conflicts with a unique index: the fire is recorded, or a run is active.
    True: sqlite.insert(_RUNS).on_conflict_do_nothing().returning(*_RETURNED),
    False: postgresql.insert(_RUNS).on_conflict_do_nothing().returning(*_RETURNED),
}


def _insert(session: Session, db: Database, rows: list[dict[str, Any]]) -> dict[Fire, str]:
    """Insert run rows, skipping those a unique index refuses; {(task_id, fire_time): run_id}
    of those inserted. One cached statement, executed for many rows (insertmanyvalues)."""
    if not rows:
        return {}
    inserted = session.connection().execute(_INSERT_IF_FREE[db.is_sqlite], rows)
    return {(task_id, fire): run_id for task_id, fire, run_id in inserted if fire is not None}


def _recorded_fires(session: Session, rows: list[dict[str, Any]]) -> set[Fire]:
    wanted = {(r["task_id"], r["fire_time"]) for r in rows}
    found = session.connection().execute(
        select(RunRow.task_id, RunRow.fire_time).where(
            RunRow.task_id.in_({t for t, _ in wanted}),
            RunRow.fire_time.in_({f for _, f in wanted}),
        )
    )
    return {(t, f) for t, f in found if f is not None and (t, f) in wanted}


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
