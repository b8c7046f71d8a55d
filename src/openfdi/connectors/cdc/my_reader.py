"""Reads and decodes the binlog on a thread of its own, so that applying one group of changes to
the target overlaps receiving and parsing the next (python-mysql-replication parses in pure
Python: the parse is the larger half of the work). The thread is the only one that touches the
replication connection."""

from __future__ import annotations

import queue
import threading

from openfdi.connectors.cdc.my_source import BinlogStream, RowChange, TxnCommit

QUEUE_EVENTS = 20_000
"""Parsed events waiting for the apply at most: bounds memory when the target is slower."""

Item = list[RowChange | TxnCommit]


class BinlogReader(threading.Thread):
    def __init__(self, stream: BinlogStream, wait_s: float) -> None:
        super().__init__(name="cdc-binlog-reader", daemon=True)
        self.stream = stream
        self.wait_s = wait_s
        self.events: queue.Queue[Item | BaseException] = queue.Queue(QUEUE_EVENTS)
        self.halt = threading.Event()

    @property
    def position(self) -> int:
        """The position after the last commit read (not necessarily applied)."""
        return self.stream.position

    def next(self, timeout_s: float) -> Item | None:
        """The next event's changes, or None after `timeout_s` without one; the reader's
        failure is raised here."""
        try:
            item = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                got = self.stream.read()
                if got:
                    self._put(got)
        except BaseException as exc:  # handed to the apply thread, which ends the run
            self._put(exc)

    def _put(self, item: Item | BaseException) -> None:
        while not self.halt.is_set():
            try:
                self.events.put(item, timeout=self.wait_s)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=2)
