"""Cut a streaming cursor into bounded `Batch`es (layer: connectors), shared by the SQL readers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from openfdi.connectors._values import estimate_rows_bytes
from openfdi.connectors.spi import Batch, ReadPlan, Row

# Rows per driver round trip: large enough to amortise it, small enough that the time bound
# of a batch is checked often.
FETCH_CHUNK = 2_000
# The first round trip of a read, before any row size is known: rows may be megabytes each.
FIRST_CHUNK = 32


def stream_batches(
    fetch: Callable[[int], Sequence[Row]],
    columns: tuple[str, ...],
    plan: ReadPlan,
    *,
    position_index: int | None = None,
    convert: Callable[[Row], Row] | None = None,
    before_fetch: Callable[[], None] | None = None,
    sizer: Callable[[Sequence[Row]], int] = estimate_rows_bytes,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Batch]:
    """Yield batches of what `fetch(n)` returns until it returns nothing.

    A batch ends at `plan.batch_rows` rows, `plan.batch_bytes` bytes or `plan.batch_seconds`,
    whichever comes first. With `position_index` (the incremental column), rows sharing the last
    row's value are held back for the next batch, so a watermark taken from `Batch.position` never
    falls in the middle of equal values; a run of equal values longer than a batch stays whole.

    Args:
        fetch: Returns up to n more rows, or an empty sequence at the end.
        columns: Names of the row fields.
        plan: Supplies the bounds.
        position_index: Index of the incremental column in a row, if the read is incremental.
        convert: Applied to every fetched row (dialect values to SPI values).
        before_fetch: Called before each fetch; raising from it stops the stream (cancellation).
        sizer: Estimates the bytes of some rows (converted); a typed one is much faster.
        clock: Monotonic seconds, replaceable in tests.
    """
    pending: list[Row] = []
    pending_bytes = 0
    seen_rows = seen_bytes = 0
    # An incremental read looks one row past the bound, to see whether the bound splits a tie.
    lookahead = 0 if position_index is None else 1
    started = clock()
    while True:
        if before_fetch is not None:
            before_fetch()
        wanted = plan.batch_rows + lookahead - len(pending)
        rows = fetch(_chunk(plan, wanted, pending_bytes, seen_rows, seen_bytes))
        if not rows:
            break
        if convert is not None:
            rows = [convert(row) for row in rows]
        size = sizer(rows)
        seen_rows += len(rows)
        seen_bytes += size
        pending.extend(rows)
        pending_bytes += size
        while pending and (
            len(pending) >= plan.batch_rows + lookahead
            or pending_bytes >= plan.batch_bytes
            or clock() - started >= plan.batch_seconds
        ):
            cut = _cut(pending, position_index, min(len(pending), plan.batch_rows))
            if cut == 0:
                break  # every pending row shares one incremental value: keep them together
            emit, pending = pending[:cut], pending[cut:]
            kept_bytes = sizer(pending)
            yield _batch(columns, emit, pending_bytes - kept_bytes, position_index)
            del emit  # the consumer's now: not kept alive while the next batch fills
            pending_bytes = kept_bytes
            started = clock()
    if pending:
        yield _batch(columns, pending, pending_bytes, position_index, last=True)


def _chunk(plan: ReadPlan, wanted: int, nbytes: int, seen_rows: int, seen_bytes: int) -> int:
    """How many rows to fetch next so the batch lands near its row and byte bounds."""
    by_rows = wanted
    if by_rows <= 0:  # extending a run of tied rows past the bound
        by_rows = FETCH_CHUNK
    if not seen_rows:
        return min(by_rows, FIRST_CHUNK)
    per_row = max(seen_bytes // seen_rows, 1)
    by_bytes = max((plan.batch_bytes - nbytes) // per_row, 1)
    return min(by_rows, by_bytes, FETCH_CHUNK)


def _cut(rows: list[Row], index: int | None, target: int) -> int:
    """Where to end the batch: at `target` rows, moved so equal incremental values stay together.

    Prefers the first change of value at or after `target` (a run of ties straddling the bound
    goes whole into this batch); else the last change before it; 0 when all rows are equal.
    """
    if index is None:
        return target
    for cut in range(max(target, 1), len(rows)):
        if rows[cut][index] != rows[cut - 1][index]:
            return cut
    last = rows[-1][index]
    cut = len(rows)
    while cut > 0 and rows[cut - 1][index] == last:
        cut -= 1
    return cut


def _batch(
    columns: tuple[str, ...], rows: list[Row], nbytes: int, index: int | None, *, last: bool = False
) -> Batch:
    position = rows[-1][index] if index is not None else None
    return Batch(columns, rows, nbytes, position, last)
