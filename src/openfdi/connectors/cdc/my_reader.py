"""The binlog, read and parsed on a thread of its own (`BackgroundLogReader`):
python-mysql-replication parses in pure Python, the larger half of the work, which then overlaps
applying the previous group of changes to the target."""

from __future__ import annotations

from openfdi.connectors.cdc.background import BackgroundLogReader
from openfdi.connectors.cdc.my_source import BinlogStream, RowChange, TxnCommit

Item = list[RowChange | TxnCommit]


class BinlogReader(BackgroundLogReader[Item]):
    def __init__(self, stream: BinlogStream, wait_s: float) -> None:
        super().__init__("cdc-binlog-reader", wait_s, join_s=2)
        self.stream = stream

    @property
    def position(self) -> int:
        """The position after the last commit read (not necessarily applied)."""
        return self.stream.position

    def read_item(self) -> Item | None:
        return self.stream.read() or None
