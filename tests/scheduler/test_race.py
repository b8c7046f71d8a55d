"""Two schedulers (two servers on one metadata database) racing: each fire is recorded once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from openfdi.scheduler.planner import Planner
from openfdi.store.db import Database
from tests.scheduler.conftest import MIN, T0, Sched

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def test_two_planners_racing_create_each_fire_once(sched: Sched) -> None:
    tasks = [sched.task() for _ in range(30)]
    for start in range(0, len(tasks), 10):
        sched.batch("start", *tasks[start : start + 10])
    other_server = Database(sched.rt.db.url)  # its own connection pool, as a second process
    planners = [Planner(sched.rt.db), Planner(other_server)]
    try:
        for minute in range(1, 4):
            now = sched.at(T0 + minute * MIN + 100)
            barrier = threading.Barrier(len(planners))
            created: list[list[tuple[str, str]]] = [[] for _ in planners]
            errors: list[BaseException] = []

            def fire(
                index: int,
                now: int = now,
                barrier: threading.Barrier = barrier,
                created: list[list[tuple[str, str]]] = created,
                errors: list[BaseException] = errors,
            ) -> None:
                barrier.wait()
                try:
                    created[index] = planners[index].due_runs(now)
                except BaseException as exc:  # reported below, not lost in the thread
                    errors.append(exc)

            threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(planners))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            # Between them the two planners started every task once: no fire twice, none lost.
            started = Counter(task for runs in created for _, task in runs)
            assert started == Counter(tasks), minute
            sched.finish_runs()
    finally:
        other_server.dispose()
    fires = sched.fires()
    assert len(fires) == 3 * len(tasks)
    assert {f.state for f in fires} == {"succeeded"}  # no skipped entry: nothing collided
    assert len({(f.task_id, f.fire_time) for f in fires}) == len(fires)
