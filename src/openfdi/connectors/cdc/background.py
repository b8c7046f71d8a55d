"""A database log read and decoded on a thread of its own, so that applying one group of changes
to the target overlaps receiving and decoding the next (in turn, reading and applying took about
twice as long as either). The thread is the only one that touches the replication connection.

A log's reader (`pg_reader`) says how to read one item (`read_item`) and what to do between
reads (`between_reads`); this base owns the bounded hand-over queue, the stop and the failure
hand-over. (A MySQL source's binlog is read in a process of its own instead, `my_reader`: on
this thread, its pure-Python parse held the interpreter's lock 59% of a catch-up.)
"""

from __future__ import annotations

import abc
import queue
import threading
from typing import Generic, TypeVar

T = TypeVar("T")

QUEUE_ITEMS = 20_000
"""Decoded items waiting for the apply at most: bounds memory when the target is slower."""


class BackgroundLogReader(threading.Thread, Generic[T], abc.ABC):
    def __init__(self, name: str, wait_s: float, *, join_s: float) -> None:
        super().__init__(name=name, daemon=True)
        self.wait_s = wait_s
        self.join_s = join_s
        self.items: queue.Queue[T | BaseException] = queue.Queue(QUEUE_ITEMS)
        self.halt = threading.Event()

    @abc.abstractmethod
    def read_item(self) -> T | None:
        """The next decoded item, or None when nothing came within about `wait_s`."""

    def between_reads(self) -> None:
        """Runs on the reader's thread before each read and once after the last."""

    def next(self, timeout_s: float) -> T | None:
        """The next item, or None after `timeout_s` without one; the reader's failure is
        raised here."""
        try:
            item = self.items.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self.between_reads()
                item = self.read_item()
                if item is not None:
                    self._put(item)
            self.between_reads()
        except BaseException as exc:  # handed to the apply thread, which ends the run
            self._put(exc)

    def _put(self, item: T | BaseException) -> None:
        while not self.halt.is_set():
            try:
                self.items.put(item, timeout=self.wait_s)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=self.join_s)
