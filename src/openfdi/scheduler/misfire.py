"""What to do with the fires of one task that are due at a tick: run one, record skips, or wait.

Pure: the planner gathers the due fires and whether the task has a run in progress, this module
decides, and the planner writes the outcome in one transaction.

- One fire due, found on time (at most `threshold_ms` late): it runs, or, if the task has a run
  in progress that began before the fire fell due, it is recorded as skipped with that reason
  (no overlap, ever).
- Anything else is a misfire (several fires due at once, or one found late: the scheduler was
  down or behind). The plan's misfire policy decides:
  - `fire_once` (default): the newest due fire runs (a catch-up run); the older ones are recorded
    as one skipped entry naming how many there were and their span.
  - `skip`: the newest due fire runs only if it is on time; every late fire is recorded as one
    skipped entry, and the plan waits for its next fire.
  - `fire_all`: the due fires run one after another, oldest first, each when the previous run
    has ended (never overlapping); at most `FIRE_ALL_LIMIT` are kept, older ones are recorded as
    one skipped entry. A fire that was already due when the catch-up run in progress began is
    part of the backlog: it waits for that run instead of being skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from openfdi.domain.schedule import MisfirePolicy

FIRE_ALL_LIMIT = 10
"""Catch-up runs `fire_all` keeps; older missed fires are recorded as skipped."""
NEWEST_NEEDED = FIRE_ALL_LIMIT + 1
"""How many of the newest due fires `decide` needs to see."""
COUNT_LIMIT = 1000
"""Due fires the planner counts one by one; beyond, it only finds the newest."""


@dataclass(frozen=True, slots=True)
class DueFires:
    """The due fires of a task: all of them after its last handled fire, up to now."""

    newest: list[int]
    """The newest due fires, ascending: at least one, at most NEWEST_NEEDED."""
    count: int | None
    """How many fires are due in all; None when more than the planner counted."""
    oldest: int
    """The oldest due fire."""


@dataclass(frozen=True, slots=True)
class Skip:
    fire_time: int
    remarks: str


@dataclass(slots=True)
class Decision:
    run: int | None = None
    """The fire to start a run for now."""
    skips: list[Skip] = field(default_factory=list)
    through: int | None = None
    """Every due fire up to this one is handled; None when nothing is (the task waits)."""
    backlog: bool = False
    """fire_all: the run catches up a backlog; while a run is in progress, the backlog waits."""


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_progress(run_id: str | None) -> str:
    who = f"the previous run {run_id}" if run_id else "another run of the task"
    return f"skipped: {who} is still in progress"


def _missed(n: int | None, first: int, last: int, policy: MisfirePolicy, outcome: str) -> str:
    many = f"{n}" if n is not None else f"more than {COUNT_LIMIT}"
    fires = "fire" if n == 1 else "fires"
    span = iso(first) if first == last else f"{iso(first)} to {iso(last)}"
    return (
        f"skipped: {many} {fires} ({span}) not run on time (no scheduler was running, or it was "
        f"behind); misfire policy {policy.value}: {outcome}"
    )


def decide(
    due: DueFires,
    policy: MisfirePolicy,
    now_ms: int,
    threshold_ms: int,
    active_run: str | None,
    active_since: int | None = None,
) -> Decision:
    """What to do with `due`, given the task's run in progress (its id and creation), if any."""
    active = active_run is not None
    newest = due.newest[-1]
    on_time = now_ms - newest <= threshold_ms
    if due.count == 1 and on_time:
        if not active:
            return Decision(run=newest, through=newest)
        waiting = active_since is not None and active_since >= newest
        if policy is MisfirePolicy.FIRE_ALL and waiting:
            return Decision(backlog=True)  # due before the catch-up run began: it waits its turn
        return Decision(skips=[Skip(newest, in_progress(active_run))], through=newest)

    older = None if due.count is None else due.count - 1
    if policy is MisfirePolicy.FIRE_ALL:
        keep = due.newest[-FIRE_ALL_LIMIT:]
        decision = Decision(backlog=True)
        if len(due.newest) > FIRE_ALL_LIMIT:
            dropped_last = due.newest[-FIRE_ALL_LIMIT - 1]
            dropped = None if due.count is None else due.count - FIRE_ALL_LIMIT
            outcome = f"at most {FIRE_ALL_LIMIT} catch-up runs; these are dropped"
            decision.skips.append(
                Skip(dropped_last, _missed(dropped, due.oldest, dropped_last, policy, outcome))
            )
            decision.through = dropped_last
        if active:
            return decision  # the backlog waits for the run in progress to end
        decision.run = keep[0]
        decision.through = keep[0]
        return decision

    if policy is MisfirePolicy.SKIP and not on_time:
        outcome = "none of them runs; the plan waits for its next fire"
        return Decision(
            skips=[Skip(newest, _missed(due.count, due.oldest, newest, policy, outcome))],
            through=newest,
        )

    # fire_once, or skip with an on-time newest fire: the newest runs, older ones are skipped.
    decision = Decision(through=newest)
    if older != 0 and len(due.newest) >= 2:
        previous = due.newest[-2]
        outcome = f"only the newest fire ({iso(newest)}) runs"
        decision.skips.append(Skip(previous, _missed(older, due.oldest, previous, policy, outcome)))
    if active:
        decision.skips.append(Skip(newest, in_progress(active_run)))
    else:
        decision.run = newest
    return decision
