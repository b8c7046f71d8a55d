"""Rows fed to a `COPY ... FROM STDIN` with psycopg's own row encoder, a run at a time (layer:
connectors).

`Copy.write_row` runs two Python frames per row around psycopg's row encoder (C, in
psycopg_binary): about a sixth of the client CPU of a binary COPY of typed rows. Here the same
encoder fills a buffer with a run of rows, driven by `map` from C, and `Copy.write` sends it:
the same bytes reach the server as with `write_row`.

The encoders and `Copy.formatter` are not psycopg's documented API (psycopg 3.2 and later have
them). Without them, rows go through `write_row`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import psycopg

__all__ = ["ROWS_PER_WRITE", "write_rows"]

Encode = Callable[[Sequence[Any], Any, bytearray], None]
"""psycopg's `format_row_*(row, transformer, out)`: append one encoded row to `out`."""

try:
    from psycopg._copy_base import format_row_binary, format_row_text

    _ENCODERS: dict[psycopg.pq.Format, Encode] | None = {
        psycopg.pq.Format.BINARY: format_row_binary,
        psycopg.pq.Format.TEXT: format_row_text,
    }
except ImportError:  # pragma: no cover - an older psycopg: write_row it is
    _ENCODERS = None

# PostgreSQL's binary COPY framing (COPY documentation, "Binary Format"): signature, flags and
# header extension length before the first row; a field count of -1 after the last.
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
BINARY_TRAILER = b"\xff\xff"
# Rows encoded per `Copy.write`: few enough that the server parses the first rows of a batch
# while the next ones are encoded, enough that a write costs nothing per row.
ROWS_PER_WRITE = 500


def write_rows(copy: psycopg.Copy, rows: Sequence[Sequence[Any]], *, binary: bool) -> None:
    """Send `rows` into a COPY FROM STDIN (binary: after `set_types`), end marker included."""
    encode = None if _ENCODERS is None else _ENCODERS.get(copy.formatter.format)
    transformer = getattr(copy.formatter, "transformer", None)
    if encode is None or transformer is None:
        for row in rows:
            copy.write_row(row)
        return
    header = BINARY_HEADER if binary else b""
    for start in range(0, len(rows), ROWS_PER_WRITE):
        buffer = bytearray(header)
        header = b""
        run = rows[start : start + ROWS_PER_WRITE]
        deque(map(encode, run, repeat(transformer), repeat(buffer)), maxlen=0)  # no frame per row
        copy.write(buffer)
    if binary:
        # psycopg frames only what `write_row` wrote: after `write` the trailer (and, for no
        # rows at all, the header) is ours to send.
        copy.write(header + BINARY_TRAILER)
