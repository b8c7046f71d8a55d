"""Streaming SELECTs on asyncmy, driven from synchronous code (layer: connectors).

PyMySQL parses result rows in pure Python (about 45,000 rows/s of a 10-column table on this
project's reference machine); asyncmy's parser is compiled (about 165,000 rows/s, the same
values). So reads run on an asyncmy connection of their own, with its own event loop, while
everything else (catalog, writes, cancel) stays on PyMySQL.

A prefetch thread runs the loop: it fetches chunks of rows into a bounded queue, so the server,
the parsing and the target's writes overlap. The queue holds at most `AHEAD_CHUNKS` chunks of at
most `CHUNK_ROWS` rows or about `CHUNK_BYTES` bytes each, so memory stays bounded whatever the
table size.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import asyncmy
import asyncmy.cursors

from openfdi.connectors.spi import Row

__all__ = ["AsyncReader", "PrefetchStream"]

CHUNK_ROWS = 2_000
CHUNK_BYTES = 1 << 20
FIRST_CHUNK_ROWS = 32  # before any row size is known: rows may be megabytes each
AHEAD_CHUNKS = 4
SIZE_SAMPLE_ROWS = 16  # rows of each chunk measured to size the next one
_POLL_SECONDS = 0.05
_JOIN_SECONDS = 10.0
_END = object()


class _Abandoned(Exception):
    """The consumer went away: the producer stops."""


class AsyncReader:
    """One asyncmy connection and the event loop it lives on. Used by one thread at a time."""

    def __init__(self, params: dict[str, Any]) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self.conn: Any = self._loop.run_until_complete(asyncmy.connect(**params))
        except BaseException:
            self._loop.close()
            raise
        self.thread_id: int = self.conn.thread_id()

    @property
    def is_usable(self) -> bool:
        return bool(self.conn.connected)

    def stream(self, sql: str, sizer: Callable[[Sequence[Row]], int]) -> PrefetchStream:
        """Start `sql` unbuffered; its rows arrive through the returned stream."""
        return PrefetchStream(self, sql, sizer)

    def run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def rollback(self) -> None:
        self.run(self.conn.rollback())

    def abort_from_other_thread(self) -> None:
        """Close the socket from outside the loop's thread: a pending read fails at once."""
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self._loop.call_soon_threadsafe(self.conn.close)

    def close(self) -> None:
        """Say goodbye when the connection is healthy; otherwise just drop the socket."""
        if self._loop.is_running():  # a read thread that would not stop: leave the loop to it
            self.abort_from_other_thread()
            return
        try:
            if self.conn.connected:
                with contextlib.suppress(Exception):
                    self.run(asyncio.wait_for(self.conn.ensure_closed(), 5))
            self.conn.close()
            # asyncio closes the socket in a callback: run it, or the server keeps the session
            # (and the abandoned query's locks) until it times out.
            for _ in range(3):
                self.run(asyncio.sleep(0))
        finally:
            self._loop.close()


class PrefetchStream:
    """A result set read ahead by a thread; `fetchmany` hands out what it fetched, in order."""

    def __init__(
        self, reader: AsyncReader, sql: str, sizer: Callable[[Sequence[Row]], int]
    ) -> None:
        self._reader = reader
        self._sql = sql
        self._sizer = sizer
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=AHEAD_CHUNKS)
        self._stopping = threading.Event()
        self._buffer: Sequence[Row] = ()
        self._offset = 0
        self._finished = False
        self._thread = threading.Thread(target=self._produce, name="openfdi-mysql-read")
        self._thread.daemon = True
        self._thread.start()

    # --- producer (its own thread) -------------------------------------------------------

    def _produce(self) -> None:
        try:
            self._reader.run(self._fetch_all())
        except _Abandoned:
            return
        except BaseException as exc:
            with contextlib.suppress(_Abandoned):
                self._put(exc)

    async def _fetch_all(self) -> None:
        cursor = self._reader.conn.cursor(asyncmy.cursors.SSCursor)
        await cursor.execute(self._sql)
        size = FIRST_CHUNK_ROWS
        while not self._stopping.is_set():
            rows = await cursor.fetchmany(size)
            if not rows:
                break
            self._put(rows)
            sample = rows[:SIZE_SAMPLE_ROWS]
            per_row = max(self._sizer(sample) // len(sample), 1)
            size = max(1, min(CHUNK_ROWS, CHUNK_BYTES // per_row))
        else:
            raise _Abandoned
        await cursor.close()
        self._put(_END)

    def _put(self, item: Any) -> None:
        # Blocking here also blocks the loop: the socket is not read, so the server waits.
        while True:
            if self._stopping.is_set():
                raise _Abandoned
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            return

    # --- consumer ---------------------------------------------------------------------------

    def fetchmany(self, size: int) -> Sequence[Row]:
        if self._offset >= len(self._buffer):
            if self._finished:
                return ()
            item = self._next()
            if item is _END:
                self._finished = True
                self._thread.join(_JOIN_SECONDS)
                return ()
            if isinstance(item, BaseException):
                self._finished = True
                self._thread.join(_JOIN_SECONDS)
                raise item
            self._buffer, self._offset = item, 0
        start = self._offset
        self._offset = min(start + size, len(self._buffer))
        if start == 0 and self._offset == len(self._buffer):
            return self._buffer
        return self._buffer[start : self._offset]

    def _next(self) -> Any:
        while True:
            try:
                return self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    return RuntimeError("the MySQL read thread ended without a result")

    def close(self, *, exhausted: bool) -> None:
        """Stop the producer. Unless the rows were all read, the connection is closed under it
        (ending the query at once); the caller must not use this reader again then."""
        if exhausted and self._finished:
            return
        self._stopping.set()
        if self._thread.is_alive():
            self._reader.abort_from_other_thread()
        self._thread.join(_JOIN_SECONDS)
