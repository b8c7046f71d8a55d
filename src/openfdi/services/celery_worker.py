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

A run that follows its source (a started REALTIME task's) never ends by itself: once claimed it
goes on in a thread of the executor, and its message is acknowledged then. If its worker is
lost, the supervisor closes it after the lease and starts another.
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
from openfdi.settings import Settings
from openfdi.store import runs

log = logging.getLogger(__name__)
_STOP_CHECK_S = 0.1
_WAIT_POLL_S = 0.05
_LEASE_POLL_S = 0.5
_REQUEUE_PAUSE_S = 1.0


class _WorkerProcess:
    """What one worker process needs to execute runs; built in the process that uses it (a
    prefork pool's children each build their own after the fork)."""

    def __init__(self, settings: Settings) -> None:
        from openfdi.services.runtime import Runtime  # the runtime imports the engine: lazily

        self.rt = Runtime.open(settings, migrate=False)
        self.executor: LocalExecutor = self.rt.start_local_engine()
        self.executor.owner = broker_owner("run")  # no run submitted yet: safe to rename
        self.lease_ms = self.executor.lease_ms
        self.closing = threading.Event()
        self._stopper = threading.Thread(target=self._stop_loop, name="stop-check", daemon=True)
        self._stopper.start()
        log.info("celery worker %d executing runs as %s", os.getpid(), self.executor.owner)

    def _stop_loop(self) -> None:
        from openfdi.services.runs import stop_unwanted_runs

        while not self.closing.wait(_STOP_CHECK_S):
            try:
                stop_unwanted_runs(self.rt, self.executor)
            except Exception:  # a database hiccup: the next check
                log.exception("checking for stopped runs failed")

    def execute(self, run_id: str) -> str:
        """Handle one delivery of the run's message; what happened, for the worker's log.

        Until the run is claimed, a metadata database out of reach sends the message back to
        the queue (after a pause, so an outage does not spin): acknowledged, it would be lost.
        """
        if self.closing.is_set():
            raise Reject("the worker is shutting down", requeue=True)
        try:
            return self._deliver(run_id)
        except DBAPIError as exc:
            log.warning("run %s: the metadata database failed (%s); message requeued", run_id, exc)
            self.closing.wait(_REQUEUE_PAUSE_S)
            raise Reject(str(exc), requeue=True) from exc

    def _deliver(self, run_id: str) -> str:
        view = runs.lease_view(self.rt.db, run_id)
        if view is None:
            return "gone"  # its task was deleted
        if view.state is RunState.RUNNING and not self._owner_lost(run_id, view):
            return "claimed elsewhere"
        if view.state not in (RunState.STARTING, RunState.RUNNING):
            return f"already {view.state.value}"
        return self._run(run_id, view.task_id)

    def _owner_lost(self, run_id: str, view: runs.LeaseView) -> bool:
        """Watch a running run's lease until its owner renews it (alive: False) or it lapses
        (lost: True, the run may be taken over); False as well if the run ends meanwhile."""
        seen = view.lease_expires_at
        while not self.closing.is_set():
            if seen is None or seen < self.rt.clock_ms():
                return True
            time.sleep(min(_LEASE_POLL_S, (seen - self.rt.clock_ms()) / 1000 + 0.05))
            now = runs.lease_view(self.rt.db, run_id)
            if now is None or now.state is not RunState.RUNNING:
                return False
            if now.lease_expires_at is not None and now.lease_expires_at > seen:
                return False  # renewed: its owner is alive
            seen = now.lease_expires_at
        return False

    def _run(self, run_id: str, task_id: str) -> str:
        """Claim and execute the run on this process's executor; return when it ends, or when
        it turns out to follow its source (it then goes on in a thread of its own)."""
        from openfdi.services.runs import build_spec

        described: list[RunSpec | CdcRunSpec] = []

        def describe() -> RunSpec | CdcRunSpec:
            spec = build_spec(self.rt, run_id, task_id)
            described.append(spec)
            return spec

        self.executor.submit(run_id, describe)  # claims it; nothing if someone else did
        while self.executor.is_active(run_id):
            if described and described[0].follows_source:
                return "following its source"
            time.sleep(_WAIT_POLL_S)
        if described:
            return "ended"
        after = runs.lease_view(self.rt.db, run_id)
        if after is not None and after.state is RunState.STARTING:
            # Not claimed by anyone: the claim failed here (the database, its log says why).
            self.closing.wait(_REQUEUE_PAUSE_S)
            raise Reject("the run could not be claimed", requeue=True)
        return "claimed elsewhere"  # another delivery's claim won the race

    def interrupt(self) -> None:
        """The worker is shutting down: end the runs now (interrupted, as `openfdi worker`
        does), so that their messages are acknowledged and Celery stops waiting for them."""
        self.closing.set()
        self.executor.shutdown()

    def close(self) -> None:
        self.closing.set()
        self.rt.close()


class _PerProcess:
    """The `_WorkerProcess` of the current process, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._built: tuple[int, _WorkerProcess] | None = None

    def get(self) -> _WorkerProcess:
        with self._lock:
            if self._built is None or self._built[0] != os.getpid():
                self._built = (os.getpid(), _WorkerProcess(self.settings))
            return self._built[1]

    def existing(self) -> _WorkerProcess | None:
        with self._lock:
            built = self._built
        return built[1] if built is not None and built[0] == os.getpid() else None


def worker_app(settings: Settings) -> Celery:
    """openfdi's Celery app with the run task registered, for a worker."""
    app = celery_app(settings)
    process = _PerProcess(settings)

    @app.task(name=RUN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def run(task: Any, run_id: str) -> str:
        outcome = process.get().execute(run_id)
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
