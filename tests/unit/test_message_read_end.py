"""When a TIMING read of a message system ends: only once the system says it is drained, or after
QUIET_END_S with no message, never at a receive that merely came back empty at the end of a batch
window while messages were still arriving (which ended a RabbitMQ run after 1,447 of 50,000)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pytest

from openfdi.connectors import _messages
from openfdi.connectors._messages import Delivery, MessageConnector
from openfdi.connectors.spi import ReadPlan, WritePlan


class Trickle(MessageConnector):
    """A system delivering `count` messages in bursts with gaps of `gap_s` between them (the
    gaps a broker shows while it pages a deep queue in), never saying it is drained."""

    def __init__(self, count: int, burst: int, gap_s: float) -> None:
        super().__init__({})
        self.pending = deque(range(count))
        self.burst = burst
        self.gap_s = gap_s
        self.next_burst = time.monotonic()
        self.in_burst = 0

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass

    def open_source(self, plan: ReadPlan) -> None:
        pass

    def receive(self, most: int, timeout_s: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        if not self.pending:
            time.sleep(min(timeout_s, 0.1))  # as a real receive, wait for one that never comes
            return []
        while self.pending and time.monotonic() < self.next_burst:
            if time.monotonic() >= deadline:
                return []
            time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
        out: list[Delivery] = []
        while self.pending and len(out) < most and self.in_burst < self.burst:
            i = self.pending.popleft()
            out.append((b'{"id": %d}' % i, {}, i))
            self.in_burst += 1
        if self.in_burst >= self.burst:
            self.in_burst = 0
            self.next_burst = time.monotonic() + self.gap_s
        return out

    def acknowledge(self, tokens: list[Any]) -> None:
        pass

    def open_target(self, plan: WritePlan) -> None:
        raise NotImplementedError

    def publish(self, payloads: list[bytes], rows: list[Any], plan: WritePlan) -> None:
        raise NotImplementedError


def _read_all(conn: MessageConnector, plan: ReadPlan) -> tuple[int, float]:
    conn.configure({"fields": [{"name": "id", "path": "$.id", "type": "bigint"}]})
    start = time.monotonic()
    count = 0
    batches = list(conn.read(plan))
    for batch in batches:
        count += len(batch.rows)
    assert batches[-1].last
    assert not any(b.last for b in batches[:-1])
    return count, time.monotonic() - start


def test_gaps_shorter_than_the_quiet_interval_do_not_end_a_timing_read() -> None:
    # Gaps of 0.15 s land inside the 0.2 s batch windows, leaving receives with a few ms each.
    conn = Trickle(count=1_500, burst=100, gap_s=0.15)
    count, _ = _read_all(conn, ReadPlan("q", batch_rows=250, batch_seconds=0.2))
    assert count == 1_500


def test_a_timing_read_ends_after_the_quiet_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_messages, "QUIET_END_S", 0.3)
    conn = Trickle(count=50, burst=50, gap_s=0.0)
    count, took = _read_all(conn, ReadPlan("q", batch_rows=10, batch_seconds=0.2))
    assert count == 50
    assert 0.3 <= took < 1.0


def test_a_gap_longer_than_the_quiet_interval_ends_the_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_messages, "QUIET_END_S", 0.3)
    conn = Trickle(count=200, burst=100, gap_s=0.6)
    count, _ = _read_all(conn, ReadPlan("q", batch_rows=1_000, batch_seconds=0.2))
    assert count == 100  # the rest comes to the next run


def test_a_realtime_read_yields_an_empty_batch_each_window_while_idle() -> None:
    conn = Trickle(count=0, burst=1, gap_s=0.0)
    conn.configure({"fields": [{"name": "id", "path": "$.id", "type": "bigint"}]})
    reads = conn.read(ReadPlan("q", batch_rows=10, batch_seconds=0.05, follow=True))
    start = time.monotonic()
    for _ in range(3):
        batch = next(reads)
        assert not batch.rows
        assert not batch.last
    assert time.monotonic() - start < 0.5


def test_a_slow_writer_between_batches_is_not_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine writes each batch before asking for the next; a write longer than the quiet
    # interval ended a TIMING read of a deep RabbitMQ queue early (19,619 of 20,000, under load).
    monkeypatch.setattr(_messages, "QUIET_END_S", 0.3)
    conn = Trickle(count=60, burst=1_000, gap_s=0.0)
    conn.configure({"fields": [{"name": "id", "path": "$.id", "type": "bigint"}]})
    count = 0
    for batch in conn.read(ReadPlan("q", batch_rows=20, batch_seconds=0.2)):
        count += len(batch.rows)
        time.sleep(0.4)  # the target's write
    assert count == 60


def test_a_timing_read_with_a_slow_writer_still_ends_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Time spent writing is not silence, but silence heard across empty batches adds up: an
    # idle queue must end a TIMING read even when each (empty) batch is followed by a pause.
    monkeypatch.setattr(_messages, "QUIET_END_S", 0.3)
    conn = Trickle(count=5, burst=5, gap_s=0.0)
    conn.configure({"fields": [{"name": "id", "path": "$.id", "type": "bigint"}]})
    start = time.monotonic()
    for batches, _ in enumerate(conn.read(ReadPlan("q", batch_rows=20, batch_seconds=0.2))):
        assert batches < 20, "the read never ended"
        time.sleep(0.4)
    assert time.monotonic() - start < 5
