"""The run state machine under concurrency, on both metadata backends.

Many threads do what clients, executors and the supervisor do, at random and at once: `run`,
`terminate`, batch start/stop (through the services), claim, renew, finish or die (through the
store, as an executor would), and expire leases (as the supervisor does). After every step the
thread checks the invariants:

- at most one live run per task;
- no run stays in `stopping` past its stop deadline plus some slack (whoever holds it);

and at the end, every task can run again. On PostgreSQL, before the stop request became one
statement, a run created between its two UPDATEs went from `starting` to `stopping` with no
owner and no deadline, and its task refused every later run (FDI.3023) for ever.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from openfdi.domain.scope import Scope
from openfdi.domain.states import ACTIVE_RUN_STATES, RunState
from openfdi.errors import TaskAlreadyRunning
from openfdi.services import batch as batch_service
from openfdi.services import runs as run_service
from openfdi.services.control_loops import Supervisor
from openfdi.services.runtime import Runtime
from openfdi.store import runs
from openfdi.store.tables import RunRow, TaskRow
from openfdi.wire.batch import OperateTasksRequest
from tests.store.test_runs import _sibling
from tests.store.test_store import _task

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True),
    pytest.mark.slow,
]

THREADS = 8
TASKS = 3
SECONDS = 6.0
LEASE_MS = 600
GRACE_MS = 1_500
STOP_DEADLINE_S = 0.2
SLACK_MS = 1_500
"""Beyond the stop deadline: the supervisor's next pass, a slow commit on a busy machine."""
_ACTIVE = tuple(s.value for s in ACTIVE_RUN_STATES)


def _stop_limit_ms(rt: Runtime) -> int:
    """How long a run may stay `stopping`: its deadline (what the services set), plus slack.
    Before stop deadlines existed, the executor's own one (stop, cancel, then abandon) bounds
    how long a live owner takes."""
    deadline = getattr(run_service, "stop_deadline_ms", None)
    base = deadline(rt) if deadline is not None else int((STOP_DEADLINE_S + 2.0) * 1000) + 1000
    return base + SLACK_MS


@dataclass
class Observed:
    """What the threads saw: when each run was first seen `stopping`, and any violation."""

    stopping_since: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, rt: Runtime, task_ids: list[str], limit_ms: int) -> None:
        with rt.db.lookup() as conn:
            rows = conn.execute(
                select(
                    RunRow.id, RunRow.task_id, RunRow.state, RunRow.lease_owner, RunRow.started_at
                ).where(RunRow.task_id.in_(task_ids), RunRow.state.in_(_ACTIVE))
            ).all()
        now = rt.clock_ms()
        live = Counter(row.task_id for row in rows)
        with self.lock:
            for task, count in live.items():
                if count > 1:
                    self.violations.append(f"task {task} has {count} live runs")
            for row in rows:
                if row.state != RunState.STOPPING:
                    continue
                since = self.stopping_since.setdefault(row.id, now)
                if now - since > limit_ms:
                    self.violations.append(
                        f"run {row.id} stopping for {now - since} ms (lease owner "
                        f"{row.lease_owner}, started at {row.started_at})"
                    )


@dataclass
class FakeExecutor:
    """Claims runs like an executor; each claimed run ends on its own, on a stop, or never
    (its owner "dies" and only the lease expiry or the stop deadline can end it)."""

    rt: Runtime
    name: str
    held: dict[str, runs.Claim] = field(default_factory=dict)

    def step(self, rng: random.Random) -> str:
        db, now = self.rt.db, self.rt.clock_ms()
        for run_id, _ in runs.reserve_unclaimed(db, self.name, 2, now, LEASE_MS):
            claim_ = runs.claim(db, run_id, self.name, now, LEASE_MS)
            if claim_ is not None:
                self.held[run_id] = claim_
        for run_id, claim_ in list(self.held.items()):
            roll = rng.random()
            try:
                if roll < 0.05:
                    del self.held[run_id]  # the owner dies without a word
                    continue
                with db.lookup() as conn:
                    state = conn.execute(
                        select(RunRow.state).where(RunRow.id == run_id)
                    ).scalar_one()
                if state == RunState.STOPPING and roll < 0.7:
                    runs.finish(db, claim_, RunState.CANCELLED, self.rt.clock_ms(), "stopped")
                    del self.held[run_id]
                elif roll < 0.2:
                    runs.finish(db, claim_, RunState.SUCCEEDED, self.rt.clock_ms())
                    del self.held[run_id]
                else:
                    runs.renew(db, claim_, self.rt.clock_ms(), LEASE_MS)
            except runs.FencedError:
                del self.held[run_id]
        return "claim"


def _tasks(rt: Runtime, creds) -> list[str]:  # type: ignore[no-untyped-def]
    first = _task(rt, creds)
    ids = [first, *(_sibling(rt, str(i)) for i in range(2, TASKS + 1))]
    with rt.db.write() as session:  # REALTIME: the supervisor starts runs of started ones
        for task in session.scalars(select(TaskRow).where(TaskRow.id.in_(ids))):
            task.task_type = "REALTIME"
    return ids


def _engine_in_workers(rt: Runtime) -> None:
    """Runs wait in the database for an executor to claim them, as with worker processes; the
    fake executors of the test are those."""
    rt.settings = rt.settings.model_copy(
        update={
            "engine_enabled": True,
            "worker_processes": 1,
            "stop_deadline_seconds": STOP_DEADLINE_S,
        }
    )


def test_random_interleavings_never_wedge_a_task(runtime: Runtime, creds) -> None:  # type: ignore[no-untyped-def]
    rt = runtime
    _engine_in_workers(rt)
    task_ids = _tasks(rt, creds)
    scope = Scope(creds.project_id, creds.instance_id)
    supervisor = Supervisor(rt)
    observed = Observed()
    limit = _stop_limit_ms(rt)
    errors: list[BaseException] = []
    end = time.monotonic() + SECONDS

    def client(seed: int) -> None:
        rng = random.Random(seed)
        executor = FakeExecutor(rt, f"executor-{seed}")
        try:
            while time.monotonic() < end:
                op = rng.choice(("run", "terminate", "start", "stop", "claim", "expire"))
                task = rng.choice(task_ids)
                if op == "run":
                    with contextlib.suppress(TaskAlreadyRunning):
                        run_service.run_task(rt, scope, task)
                elif op == "terminate":
                    run_service.stop_task(rt, scope, task)
                elif op in ("start", "stop"):
                    listed = rng.sample(task_ids, rng.randint(1, TASKS))
                    req = OperateTasksRequest.model_validate(
                        {"action_id": op, "list": [{"task_id": t} for t in listed]}
                    )
                    batch_service.batch_start_or_stop_tasks(rt, scope, req)
                elif op == "claim":
                    executor.step(rng)
                else:
                    supervisor.reconcile()
                with observed.lock:
                    observed.ops[op] += 1
                observed.check(rt, task_ids, limit)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert not observed.violations, observed.violations[:5]
    assert sum(observed.ops.values()) > 100, observed.ops

    # Quiet now: stop every task; within its deadline (the supervisor passing by), each must
    # accept a new run. Nobody claims runs any more, so the stops end them all.
    req = OperateTasksRequest.model_validate(
        {"action_id": "stop", "list": [{"task_id": t} for t in task_ids]}
    )
    batch_service.batch_start_or_stop_tasks(rt, scope, req)
    for task in task_ids:
        run_service.stop_task(rt, scope, task)
    rerun: set[str] = set()
    give_up = time.monotonic() + (limit + LEASE_MS + GRACE_MS) / 1000
    while len(rerun) < len(task_ids) and time.monotonic() < give_up:
        supervisor.reconcile()
        for task in set(task_ids) - rerun:
            try:
                run_service.run_task(rt, scope, task)
                rerun.add(task)
            except TaskAlreadyRunning:
                pass
        time.sleep(0.1)
    with rt.db.read() as session:
        stuck = session.execute(
            select(RunRow.task_id, RunRow.state, RunRow.lease_owner, RunRow.started_at).where(
                RunRow.task_id.in_(set(task_ids) - rerun), RunRow.state.in_(_ACTIVE)
            )
        ).all()
    assert rerun == set(task_ids), f"wedged after {dict(observed.ops)}: {stuck}"
