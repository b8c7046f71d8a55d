"""The base of openfdi's control loops (the supervisor's reconciler, the scheduler's fire loop,
a worker process's claim loop, an executor's lease renewal): a step called again and again
until the loop is closed, that survives a failing step (a database hiccup: the next step tries
again), and says when a step overruns its interval (a slow database, a blocked thread), which
would otherwise show only as late fires, slow stops or lapsed leases.

It lives in the engine, the lowest layer that runs loops, so that the executor's lease renewal
(engine/executor.py) and the services' control loops share it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

OVERRUN_FACTOR = 20
"""A step taking this many intervals (and at least a second) is logged as an overrun."""


class LoopService:
    """Calls `step` until closed: first after `first_wait_s`, then after what `step` returns
    (seconds to the next step) or, when it returns None or fails, after `interval_s`. Closed by
    `close()`, or by setting `closing` (an Event of the caller's, such as a signal's)."""

    def __init__(
        self,
        name: str,
        step: Callable[[], float | None],
        interval_s: float,
        *,
        first_wait_s: float | None = None,
        closing: threading.Event | None = None,
    ) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self.first_wait_s = interval_s if first_wait_s is None else first_wait_s
        self.closing = closing if closing is not None else threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the loop on a daemon thread of its own."""
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the step in progress (waiting at most `timeout_s` for it)."""
        self.closing.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def alive(self) -> bool:
        return not self.closing.is_set() and self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """The loop itself, on the calling thread, until `closing` is set."""
        overrun_s = max(1.0, OVERRUN_FACTOR * self.interval_s)
        wait = self.first_wait_s
        while not self.closing.wait(wait):
            began = time.monotonic()
            try:
                asked = self.step()
            except Exception:  # the loop must outlive a failing pass; the next one retries
                log.exception("%s pass failed", self.name)
                asked = None
            took = time.monotonic() - began
            if took > overrun_s:
                log.warning(
                    "%s pass took %.1f s (its interval is %.2f s)", self.name, took, self.interval_s
                )
            wait = self.interval_s if asked is None else max(0.0, asked)
