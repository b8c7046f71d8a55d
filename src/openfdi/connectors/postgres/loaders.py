"""Loaders for the dates Python cannot hold (layer: connectors).

PostgreSQL's date and timestamps reach 'infinity', '-infinity', years BC and years past 9999;
Python's end at years 1 and 9999, and psycopg's loaders raise DataError ("date too large") for
the rest, which would fail the whole run for one value. These loaders keep such a value as
PostgreSQL's text instead: a PostgreSQL target stores it as it was, another target refuses the
row with its own reason (dirty data), and every other value loads exactly as psycopg loads it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.abc import Loader as LoaderProtocol
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

__all__ = ["keep_out_of_range_dates"]

_TYPES = ("date", "timestamp", "timestamptz")


def _keeping_text(typname: str) -> type[Loader]:
    found = psycopg.adapters.get_loader(psycopg.postgres.types[typname].oid, Format.TEXT)
    if found is None:  # pragma: no cover - psycopg always has them
        raise RuntimeError(f"psycopg has no text loader for {typname}")
    fast: type[LoaderProtocol] = found

    class KeepingText(Loader):
        # psycopg's C loaders cannot be subclassed: this one delegates to psycopg's own.
        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._load = fast(oid, context).load

        def load(self, data: Buffer) -> Any:
            try:
                return self._load(data)
            except psycopg.DataError:
                return bytes(data).decode()

    KeepingText.__name__ = KeepingText.__qualname__ = f"{typname.capitalize()}KeepingText"
    return KeepingText


_LOADERS = {typname: _keeping_text(typname) for typname in _TYPES}


def keep_out_of_range_dates(conn: psycopg.Connection[Any]) -> None:
    """Make `conn` load a date or timestamp Python cannot hold as its text (text format)."""
    for typname, loader in _LOADERS.items():
        conn.adapters.register_loader(typname, loader)
