"""PostgreSQL's replication stream, read and decoded (pgoutput) on a thread of its own
(`BackgroundLogReader`). Positions to confirm are handed to the thread (`confirm`) and sent
between reads: it is the only one that touches the replication connection.
"""

from __future__ import annotations

from openfdi.connectors.cdc.background import BackgroundLogReader
from openfdi.connectors.cdc.pg_source import ReplicationStream
from openfdi.connectors.cdc.pgoutput import Change, Decoder, Relation

Item = tuple[object, Relation | None, int]
"""(decoded message, the relation of a change as it was when the change was decoded, bytes)."""


class BackgroundReader(BackgroundLogReader[Item]):
    def __init__(self, stream: ReplicationStream, wait_s: float) -> None:
        super().__init__("cdc-reader", wait_s, join_s=5)
        self.stream = stream
        self.decoder = Decoder()
        self._confirm: tuple[int, bool] | None = None
        self._confirmed = -1

    def confirm(self, lsn: int, *, reply: bool = False) -> None:
        """Send `lsn` as applied at the next chance (`reply`: ask the server for a keepalive)."""
        self._confirm = (lsn, reply)

    @property
    def wal_end(self) -> int:
        return self.stream.wal_end

    def read_item(self) -> Item | None:
        got = self.stream.read(self.wait_s)
        if got is None:
            return None
        message = self.decoder.decode(got[1])
        # The relation as of this change: a later Relation message (DDL) may replace it before
        # the apply thread gets here.
        relation = self.decoder.relations[message.relid] if isinstance(message, Change) else None
        return (message, relation, len(got[1]))

    def between_reads(self) -> None:
        pending = self._confirm
        if pending is None:
            return
        lsn, reply = pending
        if lsn != self._confirmed or reply:
            self.stream.confirm(lsn, reply=reply)
            self._confirmed = lsn
        if self._confirm is pending:
            self._confirm = None
