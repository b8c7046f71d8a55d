"""Stop hints: the server tells every Celery worker process at once that runs were asked to stop
(issue 15: "a broadcast reaches the executing worker"), through a fanout exchange on the broker.

Celery's own control channel (`app.control.broadcast`) reaches a worker's main process only, not
the pool processes that execute the runs, so each worker process listens for itself: a thread
with its own broker connection and a queue of its own bound to the exchange (exclusive and
deleted with the connection on RabbitMQ; a PUB/SUB channel on Redis).

The metadata database stays the only authority: a hint carries run ids but only wakes the
worker's stop check (services/celery_worker.py), which reads what the database says of its runs.
So a hint that is lost (broker down, a worker connecting late) costs the check's fallback
interval, and a hint that should not have been sent stops nothing.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

log = logging.getLogger(__name__)

_RECONNECT_S = 1.0
_DRAIN_S = 1.0
"""How long one wait for a hint lasts; the listener looks at its closing flag in between."""


def hint_exchange(queue: str) -> Exchange:
    """The fanout exchange of a deployment's stop hints (named after its run queue, so that
    deployments sharing a broker do not hear each other)."""
    return Exchange(f"{queue}.stop-hints", type="fanout", durable=False)  # type: ignore[no-untyped-call]


class StopHintPublisher:
    """Sends hints from a thread of its own: a stop answers without waiting for the broker, and
    a broker outage only loses hints (the workers' fallback check still sees the stop)."""

    def __init__(self, app: Celery, queue: str) -> None:
        self.app = app
        self.exchange = hint_exchange(queue)
        self._lock = threading.Condition()
        self._pending: collections.deque[str] = collections.deque()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="stop-hints", daemon=True)
        self._thread.start()

    def hint(self, run_id: str) -> None:
        with self._lock:
            self._pending.append(run_id)
            self._lock.notify()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._lock.wait()
                if not self._pending:
                    return
                run_ids = list(self._pending)
                self._pending.clear()
            try:
                with self.app.producer_or_acquire() as producer:
                    producer.publish(
                        {"run_ids": run_ids},
                        exchange=self.exchange,
                        routing_key="",
                        declare=[self.exchange],
                        serializer="json",
                        retry=False,
                    )
            except Exception as exc:  # hints only: the workers' fallback check sees the stop
                log.warning("stop hints for %d runs not sent: %s", len(run_ids), exc)

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is pending (for up to `timeout_s`), then stop."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout_s)


class StopHintListener:
    """Calls `wake` with the run ids of each hint the broker delivers, from a thread of its own
    that reconnects after a broker outage."""

    def __init__(self, app: Celery, queue: str, wake: Callable[[list[str]], None]) -> None:
        self.app = app
        self.exchange = hint_exchange(queue)
        name = f"{queue}.stop-hints.{socket.gethostname()[:24]}.{os.getpid()}"
        self.queue = Queue(  # type: ignore[no-untyped-call]
            f"{name}.{uuid.uuid4().hex[:8]}",
            exchange=self.exchange,
            routing_key="",
            durable=False,
            exclusive=True,
            auto_delete=True,
        )
        self.wake = wake
        self.listening = threading.Event()
        """Set while the listener's queue is bound: hints sent from then on reach it."""
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stop-hint-listener", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self._listen()
            except Exception as exc:  # the broker is away: the fallback check goes on
                self.listening.clear()
                log.warning("stop hints: %s; listening again in %.0f s", exc, _RECONNECT_S)
                self._closing.wait(_RECONNECT_S)

    def _listen(self) -> None:
        with (
            self.app.connection_for_read() as conn,
            conn.Consumer([self.queue], callbacks=[self._on_hint], accept=["json"], no_ack=True),
        ):
            self.listening.set()
            while not self._closing.is_set():
                try:
                    conn.drain_events(timeout=_DRAIN_S)
                except TimeoutError:  # socket.timeout: no hint within the wait
                    conn.heartbeat_check()

    def _on_hint(self, body: Any, message: Any) -> None:
        del message
        run_ids = body.get("run_ids") if isinstance(body, dict) else None
        if isinstance(run_ids, list):
            self.wake([str(r) for r in run_ids])

    def close(self, timeout_s: float = 2.0) -> None:
        self._closing.set()
        self._thread.join(timeout_s)
