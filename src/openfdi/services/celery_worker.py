"""The Celery executor's workers (OPENFDI_EXECUTOR=celery): `openfdi worker --executor celery`,
or Celery's own command on the same app, `celery -A openfdi.services.celery_worker worker`.

A worker process holds one runtime and one `LocalExecutor`, the engine `openfdi serve` uses
(lease renewal, stop deadline, cancel then abandon), under a broker lease owner
(`BROKER_OWNER_PREFIX`), and a thread that stops its runs when the database says so, as the
local worker processes do. A run's message (engine/celery_queue.py) is handled so that it never
runs anything twice, however often the broker delivers it:

- the run ended, is stopping, or is gone: nothing to do;
- it is `starting`: claim it (store/runs.py `claim`) and execute it; the message is
  acknowledged when the run ends, so a worker lost meanwhile gets it delivered again;
- it is `running` under a lease: either a duplicate (the owner renews the lease: drop the
  message) or a delivery after the owner was lost (the lease lapses: take the run over from its
  checkpoint; the new epoch fences the old owner out should it come back).

Bounded steps (OPENFDI_CELERY_STEP_SECONDS, default 5 s): a run that can resume past what it
committed (a started REALTIME task's, an incremental or sliced copy, a whole-table copy of a
keyed table, which goes as one slice) ends a step at the first batch boundary past the budget,
after the target's commit and the checkpoint (engine/runner.py).
Its worker then publishes the message of the next step (the run id, and the epoch of the step
that ended), hands the run off (store/runs.py `hand_off`: still `running`, its lease lapsed
under `HANDOFF_OWNER`), and only then lets the step's message be acknowledged. Whichever worker
gets the next message claims the run at once (epoch + 1) and goes on from the checkpoint; only
that message may claim a handed-off run, so a duplicate of an earlier step's message never
starts a second chain. A lost worker costs the step it was executing: that message comes back
and takes the run over when the lease lapses. A stop between two steps ends the run there and
then (store/runs.py `_stop`); a stop during a step, at its next batch boundary, as ever.

Parallel slices (a TIMING copy's `parallelism`, engine/slices.py): the run's worker cuts or
resumes the plan, committed in the target, and the run hands itself to one child run per
unfinished slice (store/runs.py `create_children`). Its worker then publishes a message per
child (the child's run id), and lets the run's message be acknowledged: the run holds no worker
and no message while its children execute, each on whichever worker claims it, as any run
(lease, epoch, steps, takeover of a lost worker's child). Should the worker be lost before it
published them, the run's message comes back and publishes them (`_publish_children`); a child
message delivered twice claims nothing the second time. The last child to end ends the run.

With steps off (0), or for a composite (CDC) run, which executes whole, a run that follows its
source never ends by itself: once claimed it goes on in a thread of the executor, and its
message is acknowledged then. If its worker is lost, the supervisor closes it after the lease
(and, for a stepping worker's run, the broker's grace) and starts another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any

from celery import Celery, signals
from celery.exceptions import Reject
from sqlalchemy.exc import DBAPIError

from openfdi.domain.states import RunState
from openfdi.engine.cdc import CdcRunSpec
from openfdi.engine.celery_queue import RUN_TASK, broker_owner, celery_app
from openfdi.engine.executor import LocalExecutor
from openfdi.engine.spec import RunSpec
from openfdi.engine.stop_hints import StopHintListener
from openfdi.settings import Settings
from openfdi.store import runs

log = logging.getLogger(__name__)
_WAIT_POLL_S = 0.05
_LEASE_POLL_S = 0.5
_HANDOFF_POLL_S = 0.01
"""How often the next step's message, delivered before its run was handed off, looks again."""
_REQUEUE_PAUSE_S = 1.0


class _WorkerProcess:
    """What one worker process needs to execute runs; built in the process that uses it (a
    prefork pool's children each build their own after the fork)."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        from openfdi.services.runtime import Runtime  # the runtime imports the engine: lazily

        self.app = app
        self.queue = settings.celery_queue
        self.rt = Runtime.open(settings, migrate=False)
        self.executor: LocalExecutor = self.rt.start_local_engine()
        # No run submitted yet: safe to rename, and to set the steps.
        self.stepping = settings.celery_step_seconds > 0
        self.executor.step_s = settings.celery_step_seconds
        self.executor.owner = broker_owner("step" if self.stepping else "run")
        self.lease_ms = self.executor.lease_ms
        self.closing = threading.Event()
        self._check_now = threading.Event()
        self._stop_check_s = settings.celery_stop_check_seconds
        self._stopper = threading.Thread(target=self._stop_loop, name="stop-check", daemon=True)
        self._stopper.start()
        self._hints = StopHintListener(app, self.queue, self._hinted)
        log.info("celery worker %d executing runs as %s", os.getpid(), self.executor.owner)

    def _stop_loop(self) -> None:
        from openfdi.services.runs import stop_unwanted_runs

        while not self.closing.is_set():
            self._check_now.wait(self._stop_check_s)
            self._check_now.clear()
            if self.closing.is_set():
                return
            try:
                stop_unwanted_runs(self.rt, self.executor)
            except Exception:  # a database hiccup: the next check
                log.exception("checking for stopped runs failed")

    def _hinted(self, run_ids: list[str]) -> None:
        """A stop hint (engine/stop_hints.py): check at once if it names a run of ours."""
        if not self.executor.active_run_ids().isdisjoint(run_ids):
            self._check_now.set()

    def execute(self, run_id: str, after: int = 0) -> str:
        """Handle one delivery of the run's message; what happened, for the worker's log.

        Until the run is claimed, a metadata database out of reach sends the message back to
        the queue (after a pause, so an outage does not spin): acknowledged, it would be lost.
        """
        if self.closing.is_set():
            raise Reject("the worker is shutting down", requeue=True)
        try:
            return self._deliver(run_id, after)
        except DBAPIError as exc:
            log.warning("run %s: the metadata database failed (%s); message requeued", run_id, exc)
            self.closing.wait(_REQUEUE_PAUSE_S)
            raise Reject(str(exc), requeue=True) from exc

    def _deliver(self, run_id: str, after: int) -> str:
        view = runs.lease_view(self.rt.db, run_id)
        if view is None:
            return "gone"  # its task was deleted
        if view.awaits_children:  # a delivery again after its slice runs were created
            return self._publish_children(run_id)
        if view.state is RunState.RUNNING and not self._may_take(run_id, view, after):
            return "claimed elsewhere"
        if view.state not in (RunState.STARTING, RunState.RUNNING):
            return f"already {view.state.value}"
        return self._run(run_id, view.task_id, after)

    def _may_take(self, run_id: str, view: runs.LeaseView, after: int) -> bool:
        """Whether this message (published after epoch `after`) may claim the running run:
        watch its lease until it is handed off to a next step (True for that step's message
        only), lapses (its owner was lost: True, the run may be taken over) or is renewed (its
        owner is alive: False); False as well if the run ends meanwhile.

        The next step's message is published just before the step that published it hands the
        run off: it waits for that, briefly, looking often."""
        seen = view
        while not self.closing.is_set():
            if seen.handed_off:
                return seen.epoch == after
            expires = seen.lease_expires_at
            now_ms = self.rt.clock_ms()
            if expires is None or expires < now_ms:
                return True
            pause = min(_LEASE_POLL_S, (expires - now_ms) / 1000 + 0.05)
            time.sleep(_HANDOFF_POLL_S if seen.epoch == after else pause)
            now = runs.lease_view(self.rt.db, run_id)
            if now is None or now.state is not RunState.RUNNING:
                return False
            next_step = seen.epoch == after and now.epoch == after
            renewed = now.lease_expires_at is not None and now.lease_expires_at > expires
            if renewed and not now.handed_off and not next_step:
                return False  # renewed (or claimed by another step): its owner is alive
            seen = now
        return False

    def _run(self, run_id: str, task_id: str, after: int) -> str:
        """Claim and execute the run on this process's executor; return when it ends or its
        step does (the next step is then published), or when it turns out to follow its
        source without steps (it then goes on in a thread of its own)."""
        from openfdi.services.runs import build_spec

        described: list[RunSpec | CdcRunSpec] = []
        ended: list[tuple[RunState | None, runs.Claim | None]] = []
        done = threading.Event()

        def describe() -> RunSpec | CdcRunSpec:
            spec = build_spec(self.rt, run_id, task_id)
            described.append(spec)
            return spec

        def on_end(state: RunState | None, claim: runs.Claim | None) -> None:
            ended.append((state, claim))
            done.set()

        # Claims it (nothing if someone else did), and tells `on_end` when it is done here.
        self.executor.submit(run_id, describe, after=after, on_end=on_end)
        while not done.wait(_WAIT_POLL_S):
            if described and described[0].follows_source and not self._steps(described[0]):
                return "following its source"
        state, claim = ended[0]
        if state is RunState.RUNNING and claim is not None:
            view = runs.lease_view(self.rt.db, run_id)
            if view is not None and view.awaits_children:
                return self._publish_children(run_id)
            return self._next_step(claim)
        if described:
            return "ended"
        view = runs.lease_view(self.rt.db, run_id)
        if view is not None and view.state is RunState.STARTING:
            # Not claimed by anyone: the claim failed here (the database, its log says why).
            self.closing.wait(_REQUEUE_PAUSE_S)
            raise Reject("the run could not be claimed", requeue=True)
        return "claimed elsewhere"  # another delivery's claim won the race

    def _steps(self, spec: RunSpec | CdcRunSpec) -> bool:
        """Whether the run executes as steps here (a composite run executes whole)."""
        return self.stepping and isinstance(spec, RunSpec)

    def _next_step(self, claim: runs.Claim) -> str:
        """The step ended at a checkpoint: publish the next step's message, then hand the run
        off to it (in this order, so that a worker lost between the two leaves a run whose
        lease lapses, which either message takes over). Only then is this message
        acknowledged. Should the publishing fail, the run stays ours until its lease lapses,
        and this message, sent back to the queue, takes it over then."""
        try:
            self.app.send_task(
                RUN_TASK,
                args=(claim.run_id, claim.epoch),
                task_id=claim.run_id,  # as the first message's: Flower shows the run
                queue=self.queue,
            )
        except Exception as exc:
            log.warning("run %s: publishing its next step failed (%s)", claim.run_id, exc)
            self.closing.wait(_REQUEUE_PAUSE_S)
            raise Reject("the next step could not be published", requeue=True) from exc
        try:
            state = runs.hand_off(self.rt.db, claim, self.rt.clock_ms())
        except runs.FencedError:
            return "step ended; taken over meanwhile"
        if state is RunState.RUNNING:
            return "step ended"
        return f"step ended; {state.value}"

    def _publish_children(self, run_id: str) -> str:
        """Publish a message for each of the run's slice runs not claimed yet (another copy of
        one already published is harmless: one claim wins). Should the broker fail, this
        message goes back to the queue, and its next delivery publishes them."""
        children = runs.queued_children(self.rt.db, run_id)
        try:
            with self.app.producer_or_acquire() as producer:
                for child in children:
                    self.app.send_task(
                        RUN_TASK, args=(child,), task_id=child, queue=self.queue, producer=producer
                    )
        except Exception as exc:
            log.warning("run %s: publishing its slice runs failed (%s)", run_id, exc)
            self.closing.wait(_REQUEUE_PAUSE_S)
            raise Reject("the slice runs could not be published", requeue=True) from exc
        return f"handed to {len(children)} slice runs"

    def interrupt(self) -> None:
        """The worker is shutting down: end the runs now (interrupted, as `openfdi worker`
        does), so that their messages are acknowledged and Celery stops waiting for them. A
        run executing as steps ends its step instead, at its next batch boundary, and another
        worker takes the next one."""
        self.closing.set()
        self.executor.shutdown()

    def close(self) -> None:
        self.closing.set()
        self._check_now.set()
        self._hints.close()
        self.rt.close()


class _PerProcess:
    """The `_WorkerProcess` of the current process, built on first use."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self._lock = threading.Lock()
        self._built: tuple[int, _WorkerProcess] | None = None

    def get(self) -> _WorkerProcess:
        with self._lock:
            if self._built is None or self._built[0] != os.getpid():
                self._built = (os.getpid(), _WorkerProcess(self.settings, self.app))
            return self._built[1]

    def existing(self) -> _WorkerProcess | None:
        with self._lock:
            built = self._built
        return built[1] if built is not None and built[0] == os.getpid() else None


def worker_app(settings: Settings) -> Celery:
    """openfdi's Celery app with the run task registered, for a worker."""
    app = celery_app(settings)
    process = _PerProcess(settings, app)

    @app.task(name=RUN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def run(task: Any, run_id: str, after: int = 0) -> str:
        """One delivery of a run's message; `after`: the epoch of the step that published it
        (0: the server's first message of the run)."""
        outcome = process.get().execute(run_id, after)
        log.info("run %s (delivery %s): %s", run_id, task.request.id, outcome)
        return outcome

    def interrupt(**_: object) -> None:
        current = process.existing()
        if current is not None:
            threading.Thread(target=current.interrupt, name="interrupt", daemon=True).start()

    def close(**_: object) -> None:
        current = process.existing()
        if current is not None:
            with contextlib.suppress(Exception):
                current.close()

    signals.worker_shutting_down.connect(interrupt, weak=False)
    signals.worker_shutdown.connect(close, weak=False)
    signals.worker_process_shutdown.connect(close, weak=False)
    return app


def __getattr__(name: str) -> Celery:
    """`celery -A openfdi.services.celery_worker worker`: Celery looks for `app` (or `celery`);
    it is built then, from the environment (OPENFDI_*), so that importing this module reads
    nothing."""
    if name in ("app", "celery"):
        app = worker_app(Settings(executor="celery"))
        globals()["app"] = globals()["celery"] = app
        return app
    raise AttributeError(name)
