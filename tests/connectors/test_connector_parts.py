"""The connector building blocks on their own: batching, reject isolation, quoting, SPI models."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from openfdi.connectors import spi
from openfdi.connectors._batching import stream_batches
from openfdi.connectors._rejects import write_isolating_rejects
from openfdi.connectors._sql import InvalidIdentifierError, quote_ident, split_qualified
from openfdi.connectors._sqlbase import coerce_watermark
from openfdi.connectors._values import (
    estimate_row_bytes,
    format_interval,
    parse_interval,
    time_from_timedelta,
)
from openfdi.connectors.spi import Column, LogicalType, ReadPlan, TableSchema, WriteMode, WritePlan

Row = tuple[Any, ...]


def test_spi_exports_exactly_its_public_names() -> None:
    public = {
        name
        for name, value in vars(spi).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == spi.__name__
    }
    assert set(spi.__all__) == public | {"Row"}


class FakeCursor:
    """Serves rows like a DB-API cursor and records the sizes asked for."""

    def __init__(self, rows: list[Row], most: int = 1_000_000) -> None:
        self.rows = rows
        self.most = most  # drivers may return fewer rows than asked for
        self.asked: list[int] = []

    def fetchmany(self, size: int) -> Sequence[Row]:
        self.asked.append(size)
        size = min(size, self.most)
        out, self.rows = self.rows[:size], self.rows[size:]
        return out


def batches_of(rows: list[Row], plan: ReadPlan, **kw: Any) -> list[list[Row]]:
    cursor = FakeCursor(rows)
    return [b.rows for b in stream_batches(cursor.fetchmany, ("a", "b"), plan, **kw)]


def test_batches_respect_the_row_bound_exactly() -> None:
    rows = [(i, "x") for i in range(25)]
    assert [len(b) for b in batches_of(rows, ReadPlan("t", batch_rows=10))] == [10, 10, 5]


def test_only_the_batch_after_which_the_reader_saw_the_end_is_marked_last() -> None:
    rows = [(i, "x") for i in range(25)]
    cursor = FakeCursor(rows)
    batches = list(stream_batches(cursor.fetchmany, ("a", "b"), ReadPlan("t", batch_rows=10)))
    assert [(len(b), b.last) for b in batches] == [(10, False), (10, False), (5, True)]
    # A read that ends exactly on a batch bound learns of the end only after that batch.
    cursor = FakeCursor(rows[:20])
    batches = list(stream_batches(cursor.fetchmany, ("a", "b"), ReadPlan("t", batch_rows=10)))
    assert [b.last for b in batches] == [False, False]


def test_the_first_fetch_is_small_because_rows_may_be_huge() -> None:
    cursor = FakeCursor([(i, "y" * 1000) for i in range(100)])
    plan = ReadPlan("t", batch_rows=10_000, batch_bytes=10_000)
    sizes = [len(b) for b in stream_batches(cursor.fetchmany, ("a", "b"), plan)]
    assert cursor.asked[0] <= 32
    assert max(sizes) <= 32  # ~1 kB rows against a 10 kB bound: never one huge batch
    assert sum(sizes) == 100


def test_batches_end_at_the_time_bound() -> None:
    ticks = iter(range(1000))
    plan = ReadPlan("t", batch_rows=1000, batch_seconds=2)
    sizes = [
        len(b)
        for b in stream_batches(
            FakeCursor([(i, "z") for i in range(100)], most=10).fetchmany,
            ("a", "b"),
            plan,
            clock=lambda: float(next(ticks)),
        )
    ]
    assert sum(sizes) == 100
    assert len(sizes) > 1


def test_ties_on_the_incremental_column_never_straddle_batches() -> None:
    values = [1, 1, 2, 2, 2, 2, 3, 4, 4]
    rows = [(v, f"r{i}") for i, v in enumerate(values)]
    got = batches_of(rows, ReadPlan("t", batch_rows=3), position_index=0)
    assert [r for b in got for r in b] == rows
    for first, second in itertools.pairwise(got):
        assert first[-1][0] != second[0][0]


def test_a_tie_longer_than_the_batch_stays_whole() -> None:
    rows = [(7, str(i)) for i in range(10)] + [(8, "last")]
    got = batches_of(rows, ReadPlan("t", batch_rows=3), position_index=0)
    assert [len(b) for b in got] == [10, 1]


def test_distinct_incremental_values_fill_batches_exactly() -> None:
    cursor = FakeCursor([(i, "v") for i in range(5)])
    plan = ReadPlan("t", batch_rows=2)
    got = list(stream_batches(cursor.fetchmany, ("a", "b"), plan, position_index=0))
    assert [len(b) for b in got] == [2, 2, 1]
    assert [b.position for b in got] == [1, 3, 4]


def test_rows_are_converted_before_batching() -> None:
    plan = ReadPlan("t", batch_rows=10)
    got = batches_of([(1, "a")], plan, convert=lambda r: (r[0] * 2, r[1].upper()))
    assert got == [[(2, "A")]]


def test_before_fetch_can_stop_the_stream() -> None:
    calls = 0

    def stop_on_second() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("cancelled")

    plan = ReadPlan("t", batch_rows=1)
    stream = stream_batches(
        FakeCursor([(1, "a"), (2, "b")]).fetchmany, ("a", "b"), plan, before_fetch=stop_on_second
    )
    assert next(stream).rows == [(1, "a")]
    with pytest.raises(RuntimeError):
        next(stream)


class BadRowTarget:
    """Accepts a slice only if it holds no negative value; counts attempts."""

    def __init__(self) -> None:
        self.stored: list[Row] = []
        self.attempts = 0

    def attempt(self, rows: list[Row]) -> None:
        self.attempts += 1
        if any(r[0] < 0 for r in rows):
            raise ValueError("negative")
        self.stored.extend(rows)


def test_reject_isolation_writes_good_rows_and_names_each_bad_one() -> None:
    rows = [(i,) for i in range(100)]
    rows[10] = (-1,)
    rows[77] = (-2,)
    target = BadRowTarget()

    written, rejected = write_isolating_rejects(
        rows, target.attempt, lambda e: str(e) if isinstance(e, ValueError) else None
    )

    assert written == 98
    assert rejected == [(10, "negative"), (77, "negative")]
    assert target.stored == [r for r in rows if r[0] >= 0]  # in input order
    assert target.attempts < 30  # bisection, not one statement per row


def test_reject_isolation_lets_other_failures_through() -> None:
    def broken(rows: list[Row]) -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        write_isolating_rejects([(1,)], broken, lambda e: None)


def test_identifiers_are_quoted_with_the_quote_doubled() -> None:
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident("a`b", "`") == "`a``b`"
    for bad in ("", "   ", "a\x00b", "new\nline", "x" * 200):
        with pytest.raises(InvalidIdentifierError):
            quote_ident(bad)


def test_qualified_names_split_at_the_first_dot() -> None:
    assert split_qualified("orders") == (None, "orders")
    assert split_qualified("sales.orders") == ("sales", "orders")
    assert split_qualified("a.b.c") == ("a", "b.c")


def test_select_keeps_the_key_only_when_all_its_columns_stay() -> None:
    schema = TableSchema(
        "t",
        (
            Column("a", LogicalType.INT, is_primary_key=True),
            Column("b", LogicalType.INT, is_primary_key=True),
            Column("c", LogicalType.TEXT),
        ),
        ("a", "b"),
    )
    renamed = schema.select(["b", "a", "c"], renames={"a": "x"})
    assert renamed.names == ("b", "x", "c")
    assert renamed.primary_key == ("x", "b")
    assert schema.select(["a", "c"]).primary_key == ()
    assert not any(c.is_primary_key for c in schema.select(["a", "c"]).columns)


def test_plans_refuse_impossible_settings() -> None:
    with pytest.raises(ValueError, match="key columns"):
        WritePlan("t", write_mode=WriteMode.UPSERT)
    with pytest.raises(ValueError, match="incremental"):
        ReadPlan("t", watermark=3)
    with pytest.raises(ValueError, match="positive"):
        ReadPlan("t", batch_rows=0)


def test_watermarks_from_checkpoints_take_the_column_type() -> None:
    tz = Column("c", LogicalType.TIMESTAMPTZ)
    naive = Column("c", LogicalType.TIMESTAMP)
    assert coerce_watermark("2026-01-01T00:00:00Z", tz) == datetime(2026, 1, 1, tzinfo=UTC)
    assert coerce_watermark("2026-01-01T08:00:00+08:00", naive) == datetime(2026, 1, 1)
    assert coerce_watermark("42", Column("c", LogicalType.BIGINT)) == 42
    assert coerce_watermark("1.50", Column("c", LogicalType.DECIMAL)) == Decimal("1.50")


def test_row_size_estimate_counts_text_and_bytes() -> None:
    assert estimate_row_bytes(("abc", b"\x00" * 10, None, 5)) == 3 + 10 + 1 + 8


def test_mysql_time_values_become_times_of_day() -> None:
    assert time_from_timedelta(timedelta(hours=23, microseconds=5)) == time(23, 0, 0, 5)
    with pytest.raises(ValueError, match="duration 25:00:00 is not a time of day"):
        time_from_timedelta(timedelta(hours=25))


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(0), "00:00:00"),
        (-timedelta(seconds=1.5), "-00:00:01.500000"),
        (-timedelta(hours=838, minutes=59, seconds=59), "-838:59:59"),
        (timedelta(days=40, microseconds=1), "960:00:00.000001"),
    ],
)
def test_durations_have_one_text_form_that_reads_back(span: timedelta, text: str) -> None:
    # str(timedelta) says "-1 day, 23:59:58.500000" for -1.5 s: neither MySQL nor PostgreSQL
    # reads that back as the same duration.
    assert format_interval(span) == text
    assert parse_interval(text) == span


@pytest.mark.parametrize("text", ["1 day", "12:60:00", "-", "1:2:3", "00:00:00.1234567"])
def test_other_text_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_interval(text)
