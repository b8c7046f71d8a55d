"""Reads and decodes a replication stream on a thread of its own, so that applying one group of
changes to the target overlaps receiving the next (the apply waits on the target's server half
of the time: in turn, reading and applying took about twice as long as either).

The thread is the only one that touches the replication connection: positions to confirm are
handed to it (`confirm`) and sent between reads.
"""

from __future__ import annotations

import queue
import threading

from openfdi.connectors.cdc.pg_source import ReplicationStream
from openfdi.connectors.cdc.pgoutput import Change, Decoder, Relation

QUEUE_MESSAGES = 20_000
"""Decoded messages waiting for the apply at most: bounds memory when the target is slower."""

Item = tuple[object, Relation | None, int]
"""(decoded message, the relation of a change as it was when the change was decoded, bytes)."""


class BackgroundReader(threading.Thread):
    def __init__(self, stream: ReplicationStream, wait_s: float) -> None:
        super().__init__(name="cdc-reader", daemon=True)
        self.stream = stream
        self.wait_s = wait_s
        self.decoder = Decoder()
        self.messages: queue.Queue[Item | BaseException] = queue.Queue(QUEUE_MESSAGES)
        self.halt = threading.Event()
        self._confirm: tuple[int, bool] | None = None
        self._confirmed = -1

    def confirm(self, lsn: int, *, reply: bool = False) -> None:
        """Send `lsn` as applied at the next chance (`reply`: ask the server for a keepalive)."""
        self._confirm = (lsn, reply)

    @property
    def wal_end(self) -> int:
        return self.stream.wal_end

    def next(self, timeout_s: float) -> Item | None:
        """The next decoded message, or None after `timeout_s` without one; the reader's
        failure is raised here."""
        try:
            item = self.messages.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self._send_confirm()
                got = self.stream.read(self.wait_s)
                if got is None:
                    continue
                message = self.decoder.decode(got[1])
                # The relation as of this change: a later Relation message (DDL) may replace it
                # before the apply thread gets here.
                relation = (
                    self.decoder.relations[message.relid] if isinstance(message, Change) else None
                )
                self._put((message, relation, len(got[1])))
            self._send_confirm()
        except BaseException as exc:  # handed to the apply thread, which ends the run
            self._put(exc)

    def _put(self, item: Item | BaseException) -> None:
        while not self.halt.is_set():
            try:
                self.messages.put(item, timeout=self.wait_s)
                return
            except queue.Full:
                continue

    def _send_confirm(self) -> None:
        pending = self._confirm
        if pending is None:
            return
        lsn, reply = pending
        if lsn != self._confirmed or reply:
            self.stream.confirm(lsn, reply=reply)
            self._confirmed = lsn
        if self._confirm is pending:
            self._confirm = None

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
