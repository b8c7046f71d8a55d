"""A private asyncio event loop on its own thread (layer: connectors).

nats-py is asyncio-only while connectors are synchronous (the engine calls them from a worker
thread, never from an event loop). Each NATS connector owns one loop thread and hands it
coroutines; waiting is done in short slices so that a `cancel()` from another thread is seen
within about 0.1 s even while the loop waits on the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")

SLICE_S = 0.1
"""Longest wait between two looks at the cancel flag."""


class LoopThread:
    """One event loop running on one daemon thread until `stop()`."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        timeout_s: float,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> T:
        """Run `coro` on the loop and return its result, waiting at most `timeout_s`.

        Raises the coroutine's own exception, `TimeoutError` when it took too long, or
        `concurrent.futures.CancelledError` once `cancelled()` turned true (the coroutine is
        cancelled on the loop either way, so nothing is left running behind the caller's back).
        """
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            try:
                return future.result(timeout=max(0.0, min(SLICE_S, left)))
            except concurrent.futures.TimeoutError:
                if cancelled():
                    future.cancel()
                    raise concurrent.futures.CancelledError from None
                if left <= SLICE_S:
                    future.cancel()
                    raise TimeoutError(f"no answer within {timeout_s:g} s") from None

    def stop(self) -> None:
        """Stop the loop and its thread, closing what is left on it. Safe to call twice."""
        if self._loop.is_closed():
            return
        # Tasks left pending on a closed loop are reported as destroyed when collected: end
        # them first (the client's reader and flusher, a fetch abandoned by a cancel).
        with contextlib.suppress(Exception):
            self.run(_cancel_others(), timeout_s=5)
        with contextlib.suppress(RuntimeError):  # already stopping
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


async def _cancel_others() -> None:
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
