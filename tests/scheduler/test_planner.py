"""The planner against a real metadata database, on a clock the test moves."""

from __future__ import annotations

import pytest

from openfdi.scheduler import planner as planner_module
from tests.scheduler.conftest import MIN, T0, Sched, ms


def test_a_started_plan_fires_once_per_fire_time(sched: Sched) -> None:
    task = sched.task()  # every minute, on the minute
    sched.batch("start", task)
    planner = sched.planner()

    assert planner.due_runs(sched.at(T0 + 59_999)) == []
    created = planner.due_runs(sched.at(T0 + MIN))
    assert [t for _, t in created] == [task]
    assert planner.due_runs(sched.at(T0 + MIN + 500)) == []  # handled: never again
    fires = sched.fires(task)
    assert [(f.fire_time, f.state) for f in fires] == [(T0 + MIN, "starting")]


def test_fires_before_the_start_never_run(sched: Sched) -> None:
    task = sched.task()  # its plan began on 2026-01-01: thousands of fires before T0
    sched.at(T0 + 30_000)
    sched.batch("start", task)
    planner = sched.planner()
    assert planner.due_runs(sched.at(T0 + 59_000)) == []
    assert len(planner.due_runs(sched.at(T0 + MIN))) == 1
    assert [f.fire_time for f in sched.fires(task)] == [T0 + MIN]


def test_a_fire_during_a_run_is_recorded_as_skipped(sched: Sched) -> None:
    task = sched.task()
    sched.batch("start", task)
    planner = sched.planner()
    [(run_id, _)] = planner.due_runs(sched.at(T0 + MIN))

    assert planner.due_runs(sched.at(T0 + 2 * MIN)) == []  # the first run is still active
    skipped = sched.fires(task)[-1]
    assert (skipped.fire_time, skipped.state) == (T0 + 2 * MIN, "skipped")
    assert skipped.remarks == f"skipped: the previous run {run_id} is still in progress"

    sched.finish_runs()
    assert len(planner.due_runs(sched.at(T0 + 3 * MIN))) == 1
    states = [f.state for f in sched.fires(task)]
    assert states == ["succeeded", "skipped", "starting"]


def test_stop_disarms_at_once(sched: Sched) -> None:
    task, other = sched.task(), sched.task()
    sched.batch("start", task, other)
    planner = sched.planner()
    assert len(planner.due_runs(sched.at(T0 + MIN))) == 2
    sched.finish_runs()

    sched.at(T0 + 2 * MIN - 1)
    sched.batch("stop", task)
    assert [t for _, t in planner.due_runs(sched.at(T0 + 2 * MIN))] == [other]
    for minute in range(3, 8):
        sched.finish_runs()
        assert [t for _, t in planner.due_runs(sched.at(T0 + minute * MIN))] == [other]
    assert [f.fire_time for f in sched.fires(task)] == [T0 + MIN]
    assert task not in planner.armed_next_fires()


def test_a_stop_the_planner_has_not_seen_still_disarms(sched: Sched) -> None:
    """The fire transaction re-reads the task: even a stop this planner missed is obeyed."""
    task = sched.task()
    sched.batch("start", task)
    planner = sched.planner()
    planner.due_runs(sched.at(T0 + 1_000))  # the task is armed in the planner's memory
    with sched.rt.db.write() as session:  # a stop whose updated_at the change scan cannot see
        session.get_one(planner_module.TaskRow, task).status = 0
    assert planner.due_runs(sched.at(T0 + MIN)) == []
    assert sched.fires(task) == []
    assert task not in planner.armed_next_fires()


def test_start_again_arms_from_the_new_start(sched: Sched) -> None:
    task = sched.task()
    sched.batch("start", task)
    planner = sched.planner()
    planner.due_runs(sched.at(T0 + MIN))
    sched.finish_runs()
    sched.batch("stop", task)
    sched.at(T0 + 10 * MIN + 30_000)
    sched.batch("start", task)  # the fires while it was stopped never run
    assert planner.due_runs(sched.at(T0 + 10 * MIN + 59_000)) == []
    assert len(planner.due_runs(sched.at(T0 + 11 * MIN))) == 1
    assert [f.fire_time for f in sched.fires(task)] == [T0 + MIN, T0 + 11 * MIN]


def test_a_changed_plan_takes_effect_from_the_next_fire(sched: Sched) -> None:
    task = sched.task()
    sched.batch("start", task)
    planner = sched.planner()
    planner.due_runs(sched.at(T0 + MIN))
    sched.finish_runs()

    sched.at(T0 + MIN + 10_000)  # every 15 minutes from 2026-01-01 00:05
    sched.change_plan(task, start_datetime=T0 - 8 * 3600_000 + 5 * MIN, period="MIN",
                      dispatch_interval=15)  # fmt: skip
    for minute in range(2, 21):
        planner.due_runs(sched.at(T0 + minute * MIN))
        sched.finish_runs()
    assert [f.fire_time for f in sched.fires(task)] == [T0 + MIN, T0 + 5 * MIN, T0 + 20 * MIN]


def test_a_new_planner_resumes_after_the_last_recorded_fire(sched: Sched) -> None:
    """A restart: nothing in memory, everything from the database; no fire twice."""
    task = sched.task()
    sched.batch("start", task)
    sched.planner().due_runs(sched.at(T0 + MIN))
    sched.finish_runs()
    restarted = sched.planner()
    assert restarted.due_runs(sched.at(T0 + MIN + 30_000)) == []
    assert len(restarted.due_runs(sched.at(T0 + 2 * MIN + 200))) == 1
    assert [f.fire_time for f in sched.fires(task)] == [T0 + MIN, T0 + 2 * MIN]


def test_next_fire_times_shown_are_the_fires_that_happen_across_dst(sched: Sched) -> None:
    """Berlin, the night DST ends: what show dispatches promises is exactly what fires."""
    from openfdi.services import dispatches

    start = ms(2026, 10, 24, 23, 10)
    sched.at(start)
    task = sched.task(
        start_datetime=ms(2026, 10, 1),
        use_quartz_cron=True,
        cron="0 0/30 * * * ?",
        cron_timezone="Europe/Berlin",
    )
    sched.batch("start", task)
    shown = dispatches.show_dispatches(sched.rt, sched.scope, task).next_fire_times
    # 00:00 and 00:30 UTC are 02:00 and 02:30 CEST; the wall clock repeats 02:00-03:00 in CET
    # (01:00-02:00 UTC) and Quartz fires each wall time once, at standard time.
    utc = [ms(2026, 10, 24, 23, 30), *(ms(2026, 10, 25, h, m) for h, m in
           ((1, 0), (1, 30), (2, 0), (2, 30)))]  # fmt: skip
    assert shown == utc
    planner = sched.planner()
    now = start
    while now < shown[-1] + 1_000:
        now += 30_000
        planner.due_runs(sched.at(now))
        sched.finish_runs()
    assert [f.fire_time for f in sched.fires(task)] == shown


def test_a_failed_tick_loses_and_repeats_nothing(
    sched: Sched, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = sched.task()
    sched.batch("start", task)
    planner = sched.planner()
    planner.due_runs(sched.at(T0 + 1_000))

    real = planner_module._insert
    calls = {"n": 0}

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(planner_module, "_insert", failing)
    with pytest.raises(RuntimeError):
        planner.due_runs(sched.at(T0 + MIN))
    assert sched.fires(task) == []
    assert len(planner.due_runs(sched.at(T0 + MIN + 250))) == 1
    assert planner.due_runs(sched.at(T0 + MIN + 500)) == []
    assert [f.fire_time for f in sched.fires(task)] == [T0 + MIN]
