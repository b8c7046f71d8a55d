"""The local executor: runs created runs on a bounded pool of threads of this process, keeps
their leases alive, and enforces the stop deadline.

A submitted run waits in a queue until one of `workers` threads takes it, claims it (the claim
sets its `started_at`), describes it and runs it. The pool bounds how many runs share the GIL
and the metadata database's write lock: thousands of fires a minute start faster through a few
busy threads than through a thread each. Runs that follow their source (a started REALTIME
task's) never end by themselves, so once claimed they move to a thread of their own and the
worker goes back to the queue. While a run waits in
the queue longer than a third of the lease, the executor reserves it (lease owner and expiry on
the `starting` row), so the supervisor does not take it for a run nobody started.

Stop is two-phase: `stop()` asks the runner to finish at its next batch boundary (batches are
bounded to ~0.2 s of work); if it has not ended by the deadline, its connectors' running
statements are cancelled, and if even that does not end it within a margin, the run is closed
as cancelled from here, which fences the stuck thread out of any further write.

Under the Celery executor (services/celery_worker.py) runs may execute as bounded steps
(`step_s`): a runner whose step ended returns RUNNING, and the submitter, told through
`on_end`, hands the run over to its next step.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from openfdi import memory
from openfdi.connectors.registry import Registry
from openfdi.domain.states import RunState
from openfdi.engine.cdc import CdcRunner, CdcRunSpec
from openfdi.engine.loops import LoopService
from openfdi.engine.metrics import RUNS
from openfdi.engine.runner import EngineSettings, Runner
from openfdi.engine.spec import RunSpec
from openfdi.store import runs
from openfdi.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class _Active:
    """A submitted run, from the queue to its end.

    The stop and force events exist from submission on, so a stop that arrives while the run
    is queued, claimed or described is not lost: the runner is built around them.
    """

    describe: Callable[[], RunSpec | CdcRunSpec]
    queued_at: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    forced: threading.Event = field(default_factory=threading.Event)
    interrupt: bool = False
    runner: Runner | CdcRunner | None = None
    deadline_timer: threading.Timer | None = None
    after: int = 0
    """The epoch its claim comes after (a step's message names the step before)."""
    on_end: Callable[[RunState | None, runs.Claim | None], None] | None = None
    """Told, once the executor let go of the run, the state its runner returned (RUNNING: a
    step ended) and its claim; (None, None) when it was not claimed or not run here."""


class LocalExecutor:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        clock_ms: Callable[[], int],
        *,
        settings: EngineSettings,
        lease_s: float = 10.0,
        stop_deadline_s: float = 1.0,
        abandon_margin_s: float = 2.0,
        workers: int = 8,
        step_s: float = 0.0,
    ) -> None:
        self.db = db
        self.registry = registry
        self.clock_ms = clock_ms
        self.settings = settings
        self.lease_ms = int(lease_s * 1000)
        self.stop_deadline_s = stop_deadline_s
        self.abandon_margin_s = abandon_margin_s
        self.step_s = step_s
        """Runs execute as steps of about this long (engine/runner.py; 0: whole)."""
        self.owner = f"local-{uuid.uuid4().hex[:12]}"
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"run-worker-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for worker in self._workers:
            worker.start()
        # Every third of the lease: a lease survives one failed or late renewal.
        interval = self.lease_ms / 1000 / 3
        self._renewer = LoopService("lease-renewer", self._renew, interval, closing=self._closing)
        self._renewer.start()

    def submit(
        self,
        run_id: str,
        describe: Callable[[], RunSpec | CdcRunSpec],
        *,
        after: int = 0,
        on_end: Callable[[RunState | None, runs.Claim | None], None] | None = None,
    ) -> None:
        """Queue a created run; returns at once.

        A worker claims the run (it does nothing if someone else did), then calls `describe`
        for what to run; the caller (the scheduler, an API request) never waits for either.
        `after` and `on_end`: see `_Active`.
        """
        with self._lock:
            if run_id in self._active or self._closing.is_set():
                ignored = True
            else:
                ignored = False
                self._active[run_id] = _Active(describe, after=after, on_end=on_end)
        if ignored:
            if on_end is not None:
                on_end(None, None)
            return
        self._queue.put(run_id)

    def active_run_ids(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._active

    def queued(self) -> int:
        """Runs submitted and not yet claimed."""
        with self._lock:
            return sum(1 for a in self._active.values() if a.runner is None)

    def room(self, *, ahead: int | None = None) -> int:
        """How many more runs to take: pool threads neither busy nor spoken for by a queued run,
        plus up to `ahead` queued ones (default: one per thread), so that a thread finishing a
        run finds the next one waiting instead of idling until its process asks for more."""
        ahead = len(self._workers) if ahead is None else ahead
        with self._lock:
            pooled = sum(
                1
                for a in self._active.values()
                if a.runner is None or not a.runner.spec.follows_source
            )
        return max(0, len(self._workers) + ahead - pooled)

    def stop(self, run_id: str, *, interrupt: bool = False) -> None:
        """Ask the run to stop; force it at the deadline. Returns at once.

        `interrupt`: the server is going away, not the user's intent: the run ends INTERRUPTED.
        """
        with self._lock:
            active = self._active.get(run_id)
            if active is None or active.deadline_timer is not None:
                return
            active.interrupt = active.interrupt or interrupt
            active.stop_requested.set()
            if active.runner is not None:
                active.runner.stop(interrupt=interrupt)
            timer = threading.Timer(self.stop_deadline_s, self._force, args=(run_id,))
            timer.daemon = True
            active.deadline_timer = timer
        timer.start()

    def _force(self, run_id: str) -> None:
        with self._lock:
            active = self._active.get(run_id)
        if active is None:
            return
        log.info("run %s passed its stop deadline: cancelling its statements", run_id)
        active.forced.set()
        runner = active.runner
        if runner is not None:
            runner.force()
        if not active.done.wait(self.abandon_margin_s) and runner is not None:
            log.warning("run %s did not end after cancel: closing it and fencing it out", run_id)
            with contextlib.suppress(runs.FencedError):
                runs.finish(
                    self.db,
                    runner.claim,
                    RunState.CANCELLED,
                    self.clock_ms(),
                    "stopped at the deadline; the executor abandoned a statement that "
                    "ignored cancellation",
                    "RUNTIME_CANCEL",
                )

    def _work(self) -> None:
        while (run_id := self._queue.get()) is not None:
            with self._lock:
                active = self._active.get(run_id)
            if active is None:
                continue
            try:
                runner = self._prepare(run_id, active)
            except Exception:  # a store outage while claiming: the lease expiry closes the run
                log.exception("run %s could not be started", run_id)
                runner = None
            if runner is None:
                self._release(run_id)
            elif runner.spec.follows_source:
                name = f"realtime-{run_id[:8]}"
                threading.Thread(target=self._run, args=(runner,), name=name, daemon=True).start()
            else:
                self._run(runner)

    def _prepare(self, run_id: str, active: _Active) -> Runner | CdcRunner | None:
        """Claim the run and build its runner; None if it is not ours to run."""
        now = self.clock_ms()
        claim = runs.claim(self.db, run_id, self.owner, now, self.lease_ms, after=active.after)
        if claim is None:
            return None
        try:
            spec = active.describe()
        except Exception as exc:
            # A run that cannot even be described (its task_detail no longer parses, a secret
            # cannot be decrypted) fails with the reason instead of blocking its task.
            remarks = f"the run could not start: {exc}"
            log.warning(
                "run %s failed: %s", run_id, remarks, exc_info=exc, extra={"run_id": run_id}
            )
            RUNS.ended("unknown", RunState.FAILED.value, 0.0)
            runs.finish(self.db, claim, RunState.FAILED, self.clock_ms(), remarks, "INTERNAL_ERR")
            return None
        runner: Runner | CdcRunner | None
        with self._lock:
            if run_id not in self._active:  # released by shutdown() while we claimed it
                runner = None
            elif isinstance(spec, CdcRunSpec):  # a composite task's run (engine/cdc.py)
                runner = CdcRunner(
                    spec,
                    claim,
                    self.db,
                    self.settings,
                    self.clock_ms,
                    stop_requested=active.stop_requested,
                    forced=active.forced,
                    interrupting=active.interrupt,
                )
                active.runner = runner
            else:
                runner = Runner(
                    spec,
                    claim,
                    self.db,
                    self.registry,
                    self.settings,
                    self.clock_ms,
                    stop_requested=active.stop_requested,
                    forced=active.forced,
                    interrupting=active.interrupt,
                    step_s=self.step_s,
                )
                active.runner = runner
        if runner is None:
            remarks = "interrupted: the server shut down as the run started"
            runs.finish(
                self.db, claim, RunState.INTERRUPTED, self.clock_ms(), remarks, "INTERNAL_ERR"
            )
        return runner

    def _run(self, runner: Runner | CdcRunner) -> None:
        run_id = runner.claim.run_id
        state: RunState | None = None
        try:
            state = runner.run()
            if state is RunState.RUNNING:
                log.info("run %s of task %s ended a step", run_id, runner.spec.task_id)
            else:
                log.info("run %s of task %s ended %s", run_id, runner.spec.task_id, state)
        except Exception:
            log.exception("run %s ended unexpectedly", run_id)
        finally:
            self._release(run_id, state, runner.claim)

    def _release(
        self, run_id: str, state: RunState | None = None, claim: runs.Claim | None = None
    ) -> None:
        with self._lock:
            active = self._active.pop(run_id, None)
        if active is not None:
            active.done.set()
            if active.deadline_timer is not None:
                active.deadline_timer.cancel()
        memory.trim()  # what the run's batches freed goes back, before the next run
        if active is not None and active.on_end is not None:
            active.on_end(state, claim)

    def _renew(self) -> None:
        """One pass of the lease renewal: renew the leases of the runs executing here, and
        reserve those queued longer than the interval."""
        waited_long = time.monotonic() - self._renewer.interval_s
        with self._lock:
            runners = [a.runner for a in self._active.values() if a.runner is not None]
            queued = [
                run_id
                for run_id, a in self._active.items()
                if a.runner is None and a.queued_at < waited_long
            ]
        try:
            runs.reserve(self.db, queued, self.owner, self.clock_ms(), self.lease_ms)
        except Exception:
            log.exception("reserving %d queued runs failed", len(queued))
        for runner in runners:
            try:
                runs.renew(self.db, runner.claim, self.clock_ms(), self.lease_ms)
            except runs.FencedError:
                if not self.is_active(runner.claim.run_id):
                    continue  # it ended (or handed its step over) meanwhile
                log.warning("run %s was taken over; stopping it", runner.claim.run_id)
                runner.force()
            except Exception:
                log.exception("lease renewal of run %s failed", runner.claim.run_id)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop every run (gracefully, then forced at the deadline) and wait for them.

        Queued runs are taken off the queue unclaimed: they stay `starting` until their
        reservation or start grace runs out, and are then closed as interrupted.
        """
        self._closing.set()
        with self._lock:
            unclaimed = [r for r, a in self._active.items() if a.runner is None]
        for run_id in unclaimed:
            self._release(run_id)
        for _ in self._workers:
            self._queue.put(None)
        for run_id in self.active_run_ids():
            self.stop(run_id, interrupt=True)
        with self._lock:
            pending = [a.done for a in self._active.values()]
        deadline = time.monotonic() + timeout_s
        for done in pending:
            done.wait(max(0.0, deadline - time.monotonic()))
