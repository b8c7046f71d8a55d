"""Streaming SELECTs on asyncmy, driven from synchronous code (layer: connectors).

PyMySQL parses result rows in pure Python (about 45,000 rows/s of a 10-column table on this
project's reference machine); asyncmy's parser is compiled (about 165,000 rows/s, the same
values). So reads run on an asyncmy connection of their own, with its own event loop, while
everything else (catalog, writes, cancel) stays on PyMySQL.

A prefetch thread runs the loop: it fetches chunks of rows into a queue, so the server, the
parsing and the target's writes overlap (the parsing holds the GIL, so what it overlaps is the
consumer's waits on its target: a COPY's end, a commit; the queue must hold what is parsed
meanwhile, about a batch). Chunks and queue are bounded by the memory the rows take in this
process (their tuples and values, measured with `sys.getsizeof` on a sample of each chunk), not
by a count: a chunk takes about `CHUNK_BYTES`, the queue at most `AHEAD_BYTES` (or one chunk, if
a single one is larger), whatever the width of the rows. Python objects take several times the
size of the data they hold (a 10-column row of about 170 bytes of values takes about 900).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import asyncmy
import asyncmy.cursors

from openfdi.connectors.spi import Row

__all__ = ["AsyncReader", "PrefetchStream", "rows_memory"]

CHUNK_BYTES = 256 << 10
# 300,000 rows x 10 columns into PostgreSQL: 1 MiB made the consumer wait 3 times as long on
# reads (2.0 s instead of 0.6 s); 16 MiB added 8 MB to the peak. The queue holds about a batch.
AHEAD_BYTES = 4 << 20  # about one batch of 5,000 such rows
CHUNK_ROWS = 2_000
FIRST_CHUNK_ROWS = 32  # before any row size is known: rows may be megabytes each
SIZE_SAMPLE_ROWS = 16  # rows of each chunk measured to size it and the next one
_POLL_SECONDS = 0.05
_JOIN_SECONDS = 10.0
_END = object()


def rows_memory(rows: Sequence[Row]) -> int:
    """Bytes `rows` take in this process: their tuples and values (a value shared by several
    rows, like None or a small int, counts each time)."""
    getsizeof = sys.getsizeof
    return sum(getsizeof(row) + sum(map(getsizeof, row)) for row in rows)


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

    def stream(self, sql: str) -> PrefetchStream:
        """Start `sql` unbuffered; its rows arrive through the returned stream."""
        return PrefetchStream(self, sql)

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

    def __init__(self, reader: AsyncReader, sql: str) -> None:
        self._reader = reader
        self._sql = sql
        self._ready: deque[tuple[Any, int]] = deque()  # (chunk, end or exception; its bytes)
        self._queued_bytes = 0
        self.peak_queued_bytes = 0
        """The most the queue held at once, in bytes of memory (for tests and diagnostics)."""
        self._changed = threading.Condition()
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
                self._put(exc, 0)

    async def _fetch_all(self) -> None:
        cursor = self._reader.conn.cursor(asyncmy.cursors.SSCursor)
        await cursor.execute(self._sql)
        size = FIRST_CHUNK_ROWS
        while not self._stopping.is_set():
            rows = await cursor.fetchmany(size)
            if not rows:
                break
            sample = rows[:SIZE_SAMPLE_ROWS]
            per_row = max(rows_memory(sample) // len(sample), 1)
            self._put(rows, per_row * len(rows))
            del rows, sample  # the consumer's now: do not hold them while fetching the next
            size = max(1, min(CHUNK_ROWS, CHUNK_BYTES // per_row))
        else:
            raise _Abandoned
        await cursor.close()
        self._put(_END, 0)

    def _put(self, item: Any, nbytes: int) -> None:
        # Blocking here also blocks the loop: the socket is not read, so the server waits.
        with self._changed:
            while self._ready and self._queued_bytes + nbytes > AHEAD_BYTES:
                if self._stopping.is_set():
                    raise _Abandoned
                self._changed.wait(_POLL_SECONDS)
            if self._stopping.is_set():
                raise _Abandoned
            self._ready.append((item, nbytes))
            self._queued_bytes += nbytes
            self.peak_queued_bytes = max(self.peak_queued_bytes, self._queued_bytes)
            self._changed.notify_all()

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
        start, end = self._offset, min(self._offset + size, len(self._buffer))
        rows = self._buffer if start == 0 and end == len(self._buffer) else self._buffer[start:end]
        if end == len(self._buffer):  # used up: let it go with the caller's rows
            self._buffer, self._offset = (), 0
        else:
            self._offset = end
        return rows

    def _next(self) -> Any:
        with self._changed:
            while not self._ready:
                if not self._thread.is_alive():
                    return RuntimeError("the MySQL read thread ended without a result")
                self._changed.wait(_POLL_SECONDS)
            item, nbytes = self._ready.popleft()
            self._queued_bytes -= nbytes
            self._changed.notify_all()
            return item

    def close(self, *, exhausted: bool) -> None:
        """Stop the producer. Unless the rows were all read, the connection is closed under it
        (ending the query at once); the caller must not use this reader again then."""
        if exhausted and self._finished:
            return
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._reader.abort_from_other_thread()
        self._thread.join(_JOIN_SECONDS)
        with self._changed:  # whatever was read ahead goes now, not with the stream object
            self._ready.clear()
            self._queued_bytes = 0
        self._buffer = ()
