"""Find the rows a target refuses without giving up the bulk path (layer: connectors).

A failed bulk write is split in halves, each retried atomically, down to single rows: good rows
are still written in bulk and each bad row is reported with the target's reason. k bad rows among
n cost about k * log2(n) extra attempts, instead of the n statements of a row-by-row fallback.
"""

from __future__ import annotations

from collections.abc import Callable

from openfdi.connectors.spi import Row


def write_isolating_rejects(
    rows: list[Row],
    attempt: Callable[[list[Row]], None],
    row_error: Callable[[Exception], str | None],
) -> tuple[int, list[tuple[int, str]]]:
    """Write `rows` with `attempt`, isolating the rows that make it fail.

    Args:
        rows: The rows, in order (order is kept, which matters to upserts of one key twice).
        attempt: Writes a list of rows atomically: all or nothing (a savepoint around it).
        row_error: The reason when an exception means "some row is bad" (data or constraint
            error); None for any other failure, which propagates unchanged.

    Returns:
        The number of rows written, and the index in `rows` and reason of each rejected row, in
        input order.
    """
    written = 0
    rejected: list[tuple[int, str]] = []
    spans = [(0, len(rows))] if rows else []
    while spans:
        lo, hi = spans.pop()
        try:
            attempt(rows[lo:hi])
        except Exception as exc:
            reason = row_error(exc)
            if reason is None:
                raise
            if hi - lo == 1:
                rejected.append((lo, reason))
                continue
            mid = (lo + hi) // 2
            spans.append((mid, hi))
            spans.append((lo, mid))  # popped first: left to right keeps input order
        else:
            written += hi - lo
    return written, rejected
