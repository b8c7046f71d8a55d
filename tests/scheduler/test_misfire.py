"""Misfires: what each policy does with fires that were not run on time (after downtime)."""

from __future__ import annotations

import pytest

from openfdi.domain.schedule import MisfirePolicy
from openfdi.scheduler.misfire import FIRE_ALL_LIMIT, DueFires, Skip, decide
from tests.scheduler.conftest import MIN, T0, Sched

NOW = T0 + 10 * MIN
LATE = 60_000


def due(*fires: int, count: int | None = None) -> DueFires:
    ordered = sorted(fires)
    return DueFires(ordered[-FIRE_ALL_LIMIT - 1 :], len(ordered) if count is None else count,
                    ordered[0])  # fmt: skip


# --- the decision alone


@pytest.mark.parametrize("policy", list(MisfirePolicy))
def test_one_on_time_fire_runs_whatever_the_policy(policy: MisfirePolicy) -> None:
    decision = decide(due(NOW - 500), policy, NOW, LATE, None)
    assert (decision.run, decision.skips, decision.through) == (NOW - 500, [], NOW - 500)


@pytest.mark.parametrize("policy", list(MisfirePolicy))
def test_one_on_time_fire_during_a_run_is_skipped_whatever_the_policy(
    policy: MisfirePolicy,
) -> None:
    decision = decide(due(NOW - 500), policy, NOW, LATE, "r1")
    assert decision.run is None
    assert decision.skips == [Skip(NOW - 500, "skipped: the previous run r1 is still in progress")]


def test_fire_once_runs_the_newest_and_records_the_others_once() -> None:
    fires = [T0 + i * MIN for i in range(1, 11)]  # ten missed, the newest on time
    decision = decide(due(*fires), MisfirePolicy.FIRE_ONCE, NOW + 1_000, LATE, None)
    assert decision.run == fires[-1]
    [skip] = decision.skips
    assert skip.fire_time == fires[-2]
    assert "9 fires (2026-03-02T08:01:00Z to 2026-03-02T08:09:00Z)" in skip.remarks
    assert "misfire policy fire_once" in skip.remarks


def test_fire_once_catches_up_a_single_late_fire() -> None:
    decision = decide(due(NOW - 5 * MIN), MisfirePolicy.FIRE_ONCE, NOW, LATE, None)
    assert (decision.run, decision.skips) == (NOW - 5 * MIN, [])


def test_skip_runs_nothing_late() -> None:
    fires = [NOW - 3 * MIN, NOW - 2 * MIN]
    decision = decide(due(*fires), MisfirePolicy.SKIP, NOW, LATE, None)
    assert decision.run is None
    [skip] = decision.skips
    assert skip.fire_time == fires[-1]
    assert "2 fires" in skip.remarks
    assert "none of them runs" in skip.remarks
    assert decision.through == fires[-1]


def test_skip_still_runs_an_on_time_fire_after_a_gap() -> None:
    fires = [NOW - 3 * MIN, NOW - 2 * MIN, NOW - 100]
    decision = decide(due(*fires), MisfirePolicy.SKIP, NOW, LATE, None)
    assert decision.run == NOW - 100
    assert [s.fire_time for s in decision.skips] == [NOW - 2 * MIN]


def test_fire_all_keeps_the_newest_ten_and_waits_for_the_run_in_progress() -> None:
    fires = [NOW - i * MIN for i in range(15, 0, -1)]
    decision = decide(due(*fires), MisfirePolicy.FIRE_ALL, NOW, LATE, "r1")
    assert decision.run is None
    [dropped] = decision.skips
    assert dropped.fire_time == fires[4]
    assert "5 fires" in dropped.remarks
    assert decision.through == fires[4]

    rest = fires[5:]
    decision = decide(due(*rest), MisfirePolicy.FIRE_ALL, NOW, LATE, None)
    assert (decision.run, decision.skips, decision.through) == (rest[0], [], rest[0])


def test_fire_all_keeps_a_fire_that_was_due_before_the_catch_up_run_began() -> None:
    last = NOW - 500  # on time, but already due when the catch-up run in progress was created
    waits = decide(due(last), MisfirePolicy.FIRE_ALL, NOW, LATE, "r1", active_since=NOW - 100)
    assert (waits.run, waits.skips, waits.through) == (None, [], None)
    # A run that began before the fire is a plain collision: skipped, whatever the policy.
    skips = decide(due(last), MisfirePolicy.FIRE_ALL, NOW, LATE, "r1", active_since=NOW - 9_000)
    assert [s.fire_time for s in skips.skips] == [last]


def test_more_fires_than_counted_are_reported_as_such() -> None:
    decision = decide(
        DueFires([NOW - 2 * MIN, NOW - MIN], None, T0 - 10_000 * MIN),
        MisfirePolicy.FIRE_ONCE,
        NOW,
        LATE,
        None,
    )
    assert decision.run == NOW - MIN
    assert "more than 1000 fires" in decision.skips[0].remarks


# --- against the database: the planner after downtime


def _down_for_ten_minutes(sched: Sched, policy: str) -> str:
    task = sched.task(misfire_policy=policy)
    sched.batch("start", task)
    sched.planner().due_runs(sched.at(T0 + MIN))
    sched.finish_runs()
    return task  # the server goes down after the first fire


def test_fire_once_after_downtime(sched: Sched) -> None:
    task = _down_for_ten_minutes(sched, "fire_once")
    planner = sched.planner()  # back up at 08:11:30, ten fires missed
    assert len(planner.due_runs(sched.at(T0 + 11 * MIN + 30_000))) == 1
    fires = sched.fires(task)
    assert [(f.fire_time, f.state) for f in fires] == [
        (T0 + MIN, "succeeded"),
        (T0 + 10 * MIN, "skipped"),
        (T0 + 11 * MIN, "starting"),
    ]
    assert "9 fires (2026-03-02T08:02:00Z to 2026-03-02T08:10:00Z)" in (fires[1].remarks or "")
    sched.finish_runs()
    assert len(planner.due_runs(sched.at(T0 + 12 * MIN))) == 1  # then on time again


def test_skip_after_downtime(sched: Sched) -> None:
    task = _down_for_ten_minutes(sched, "skip")
    planner = sched.planner(misfire_threshold_ms=10_000)
    assert planner.due_runs(sched.at(T0 + 11 * MIN + 30_000)) == []  # the newest is 30 s late
    fires = sched.fires(task)
    assert [(f.fire_time, f.state) for f in fires] == [
        (T0 + MIN, "succeeded"),
        (T0 + 11 * MIN, "skipped"),
    ]
    assert "10 fires (2026-03-02T08:02:00Z to 2026-03-02T08:11:00Z)" in (fires[1].remarks or "")
    assert len(planner.due_runs(sched.at(T0 + 12 * MIN + 2_000))) == 1


def test_fire_all_after_downtime_runs_them_in_order_never_overlapping(sched: Sched) -> None:
    task = sched.task(misfire_policy="fire_all")
    sched.batch("start", task)
    sched.planner().due_runs(sched.at(T0 + MIN))
    sched.finish_runs()
    planner = sched.planner()  # back up 14 minutes later: 14 fires missed
    now = T0 + 15 * MIN + 5_000
    started: list[int] = []
    for step in range(20):
        created = planner.due_runs(sched.at(now + step * 1_000))
        assert len(created) <= 1
        if step % 2 == 0:  # each catch-up run takes two ticks; the backlog waits meanwhile
            assert len(created) == 1
            started.append(sched.fires(task)[-1].fire_time)
        else:
            assert created == []
            sched.finish_runs()
    fires = sched.fires(task)
    skipped = [f for f in fires if f.state == "skipped"]
    assert [f.fire_time for f in skipped] == [T0 + 5 * MIN]
    assert "4 fires" in (skipped[0].remarks or "")
    # The ten newest missed fires, oldest first, one at a time; none of them skipped.
    assert started == [T0 + i * MIN for i in range(6, 16)]
    with_runs = [f for f in fires if f.state != "skipped"]
    assert len(with_runs) == len({f.fire_time for f in with_runs})


def test_the_policy_is_validated_shown_and_kept_by_a_put_without_it(sched: Sched) -> None:
    from openfdi.errors import InvalidParameter
    from openfdi.services import dispatches

    task = sched.task(misfire_policy="skip")
    assert dispatches.show_dispatches(sched.rt, sched.scope, task).misfire_policy == "skip"
    sched.change_plan(task, period="HOUR", dispatch_interval=2)
    assert dispatches.show_dispatches(sched.rt, sched.scope, task).misfire_policy == "skip"
    sched.change_plan(task, period="HOUR", dispatch_interval=2, misfire_policy="fire_all")
    assert dispatches.show_dispatches(sched.rt, sched.scope, task).misfire_policy == "fire_all"
    with pytest.raises(InvalidParameter) as caught:
        sched.change_plan(task, period="HOUR", dispatch_interval=2, misfire_policy="sometimes")
    assert "[misfire_policy]" in caught.value.message
