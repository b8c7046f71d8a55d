"""The Celery executor's broker side: openfdi's Celery app, and the dispatcher that publishes
one message per run (OPENFDI_EXECUTOR=celery).

The message carries the run id only. Whoever receives it claims the run through the metadata
database (store/runs.py `claim`: lease and fencing epoch), so the broker only carries work and
never decides it: a duplicated or redelivered message of a run that is claimed or ended finds
nothing to take. Messages are acknowledged late (when the run ends) and rejected back to the
queue when their worker is lost, so a lost worker's run is delivered again and taken over once
its lease lapses (services/celery_worker.py). A run executed as bounded steps gets one message
per step: its worker publishes the next step's (the run id, and the epoch of the step that
ended) as the step ends.

The dispatcher publishes from a thread of its own: a burst of scheduled fires never waits for
the broker, and a broker outage only delays publishing (the runs wait, reserved, in the
database; see `_reserve_waiting`).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from celery import Celery

from openfdi.engine.cdc import CdcRunSpec
from openfdi.engine.spec import RunSpec
from openfdi.engine.stop_hints import StopHintPublisher
from openfdi.settings import Settings
from openfdi.store import runs
from openfdi.store.db import Database

log = logging.getLogger(__name__)

RUN_TASK = "openfdi.run"
"""The Celery task name of a run's message; its arguments are the run id and, for a step's
message, the epoch of the step before (services/celery_worker.py)."""
_PUBLISH_RETRY_S = 1.0
REPUBLISH_AFTER_S = 300.0
"""A run still waiting in the broker after this long is published again."""


def celery_app(settings: Settings) -> Celery:
    """openfdi's Celery app: the same configuration for the server (publishing) and workers."""
    queue = settings.celery_queue
    app = Celery("openfdi", broker=settings.celery_broker_url, set_as_current=False)
    app.conf.update(
        # One durable queue behind a direct exchange of the same name: several openfdi
        # deployments can share a broker (vhost or not) by naming different queues.
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_exchange_type="direct",
        task_default_routing_key=queue,
        # The message is acknowledged when the run ends, and goes back to the queue if the
        # worker executing it dies: the run is then taken over (store/runs.py `claim`).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        # A worker takes one message per free slot: a run waiting in a busy worker's prefetch
        # would wait for it although another worker is idle.
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_heartbeat=settings.celery_broker_heartbeat_seconds,
        broker_transport_options=_redis_transport_options(
            settings.celery_visibility_timeout_seconds
        ),
        worker_hijack_root_logger=False,  # openfdi configures logging (logs.py)
        worker_redirect_stdouts=False,
    )
    return app


def _redis_transport_options(visibility_timeout_s: float) -> dict[str, float]:
    """Redis only (RabbitMQ ignores them): how soon an unacknowledged message of a lost worker
    comes back. kombu looks for such messages only every `unacked_restore_interval` times
    `unacked_restore_throttle` seconds (10 times 10 by default), so a lost worker's run came back
    up to 100 s after its visibility timeout, past the supervisor's grace: closed interrupted
    instead of taken over. Sweeping every call, a few times per timeout, makes the timeout the
    bound the settings promise."""
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": max(1.0, min(10.0, visibility_timeout_s / 4)),
        "unacked_restore_throttle": 1,
    }


def broker_owner(role: str) -> str:
    """A lease owner name under `BROKER_OWNER_PREFIX` (at most 64 characters, the column's)."""
    host = socket.gethostname()[:24]
    return f"{runs.BROKER_OWNER_PREFIX}{role}:{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class CeleryDispatcher:
    """The executor of a server whose runs Celery workers execute: publishes a message per
    submitted run and keeps the runs it published reserved while they wait in the broker.

    Nothing executes here, so `stop` only drops a run not yet published and sends a stop hint:
    the stop itself was written to the database (a queued run is `cancelled` there, and its
    message then finds nothing to claim), and the worker executing a run reads it there, at
    once on the hint (engine/stop_hints.py), else at its next check.
    """

    def __init__(
        self,
        app: Celery,
        queue: str,
        db: Database,
        clock_ms: Callable[[], int],
        *,
        lease_s: float = 10.0,
    ) -> None:
        self.app = app
        self.queue = queue
        self.db = db
        self.clock_ms = clock_ms
        self.lease_ms = int(lease_s * 1000)
        self.owner = broker_owner("queue")
        self._lock = threading.Condition()
        self._pending: collections.deque[str] = collections.deque()
        self._dropped: set[str] = set()
        self._publishing: list[str] = []
        self._waiting: dict[str, float] = {}
        """Runs submitted here and maybe not claimed yet: when (monotonic)."""
        self._republished: dict[str, float] = {}
        """Slice runs (published by workers) this server published again: when (monotonic)."""
        self._closing = threading.Event()
        self._hints = StopHintPublisher(app, queue)
        self._publisher = threading.Thread(target=self._publish_loop, name="celery-publish")
        self._reserver = threading.Thread(target=self._reserve_loop, name="celery-reserve")
        for thread in (self._publisher, self._reserver):
            thread.daemon = True
            thread.start()

    def submit(self, run_id: str, describe: Callable[[], RunSpec | CdcRunSpec]) -> None:
        """Queue the run's message for publishing; returns at once. `describe` is not used:
        the worker that claims the run builds its own description."""
        del describe
        with self._lock:
            if self._closing.is_set():
                return
            self._waiting[run_id] = time.monotonic()
            self._pending.append(run_id)
            self._lock.notify()

    def stop(self, run_id: str, *, interrupt: bool = False) -> None:
        with self._lock:
            if run_id in self._pending:  # not published yet: it never will be
                self._dropped.add(run_id)
        self._hints.hint(run_id)  # the worker executing it checks the database at once

    def active_run_ids(self) -> set[str]:
        with self._lock:
            return {*self._pending, *self._publishing} - self._dropped

    def queued(self) -> int:
        return len(self.active_run_ids())

    def _take_pending(self) -> list[str]:
        with self._lock:
            while not self._pending and not self._closing.is_set():
                self._lock.wait(0.5)
            self._publishing = [r for r in self._pending if r not in self._dropped]
            self._pending.clear()
            self._dropped.clear()
            return list(self._publishing)

    def _publish_loop(self) -> None:
        while not self._closing.is_set() or self._pending:
            batch = self._take_pending()
            if not batch:
                continue
            sent = 0
            try:
                with self.app.producer_or_acquire() as producer:  # one connection per batch
                    for run_id in batch:
                        self.app.send_task(
                            RUN_TASK,
                            args=(run_id,),
                            task_id=run_id,  # Celery's id is the run's: Flower, `celery inspect`
                            queue=self.queue,
                            producer=producer,
                        )
                        sent += 1
            except Exception:  # the broker is down: the runs wait here, reserved, and retry
                log.exception("publishing %d runs to the broker failed", len(batch) - sent)
                if self._closing.wait(_PUBLISH_RETRY_S):
                    return
            finally:
                with self._lock:
                    self._pending.extendleft(reversed(batch[sent:]))
                    self._publishing = []

    def _reserve_loop(self) -> None:
        interval = self.lease_ms / 1000 / 3
        while not self._closing.wait(interval):
            try:
                self._reserve_waiting(time.monotonic() - interval)
                self._republish_queued_slices()
            except Exception:  # a database hiccup: the next pass reserves them
                log.exception("reserving runs waiting in the broker failed")

    def _reserve_waiting(self, older_than: float) -> None:
        """Reserve the runs submitted before `older_than` that are still `starting` (waiting in
        the broker for a free worker), so the supervisor does not close them for nobody having
        claimed them; forget the others. A reservation lapses if this server is gone, and the
        runs are then closed as interrupted (their messages find nothing to claim)."""
        with self._lock:
            old = [r for r, at in self._waiting.items() if at < older_than]
        if not old:
            return
        still = set(runs.reserve(self.db, old, self.owner, self.clock_ms(), self.lease_ms))
        stale = time.monotonic() - REPUBLISH_AFTER_S
        with self._lock:
            for run_id in old:
                if run_id not in still:
                    self._waiting.pop(run_id, None)
                elif self._waiting[run_id] < stale and run_id not in self._pending:
                    # Queued this long: maybe the broker lost the message (a Redis without
                    # persistence restarted). Another copy is harmless: one claim wins.
                    self._waiting[run_id] = time.monotonic()
                    self._pending.append(run_id)
                    self._lock.notify()

    def _republish_queued_slices(self) -> None:
        """Publish again the slice runs of parallel copies still unclaimed REPUBLISH_AFTER_S
        after their creation, and every REPUBLISH_AFTER_S after: a worker published their
        messages, and the broker may have lost them (a Redis without persistence restarted),
        which would leave their run waiting for ever. Another copy is harmless: one claim
        wins."""
        stale_ms = self.clock_ms() - int(REPUBLISH_AFTER_S * 1000)
        queued = set(runs.long_queued_children(self.db, stale_ms))
        now = time.monotonic()
        with self._lock:
            for run_id in list(self._republished):
                if run_id not in queued:
                    del self._republished[run_id]  # claimed or ended since
            for run_id in queued:
                if now - self._republished.get(run_id, now - REPUBLISH_AFTER_S) < REPUBLISH_AFTER_S:
                    continue
                self._republished[run_id] = now
                if run_id not in self._pending:
                    log.warning("slice run %s still queued: its message published again", run_id)
                    self._pending.append(run_id)
            self._lock.notify()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Publish what is pending (for up to `timeout_s`), then stop."""
        deadline = time.monotonic() + timeout_s
        while self.queued() and time.monotonic() < deadline and self._publisher.is_alive():
            time.sleep(0.05)
        self._closing.set()
        with self._lock:
            self._lock.notify_all()
        self._publisher.join(max(0.1, deadline - time.monotonic()))
        self._reserver.join(1.0)
        self._hints.close(max(0.1, deadline - time.monotonic()))
