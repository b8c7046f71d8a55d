"""The dates and times Python cannot hold (layer: connectors).

PostgreSQL's date and timestamps reach 'infinity', '-infinity', years BC and years past 9999,
and its time reaches 24:00:00; Python's stop at years 1 and 9999 and at 23:59:59.999999, and
psycopg's loaders raise DataError ("date too large") for the rest, which would fail the whole
run for one value. Such a value is kept as PostgreSQL's text instead: a PostgreSQL target stores
it as it was, another target refuses the row with its own
reason (dirty data).

psycopg's own (compiled) loaders stay in use: a Python loader in their place costs a call per
value (a read of timestamps took 60 % longer). Only a fetched chunk they refuse is loaded again,
from the same result, with loaders that fall back to the text (`load_again`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.abc import Loader as LoaderProtocol
from psycopg.adapt import AdaptersMap, Buffer, Loader, Transformer
from psycopg.pq import Format

__all__ = ["keep_out_of_range_dates", "load_again"]

_TYPES = ("date", "time", "timestamp", "timestamptz")  # time: PostgreSQL has 24:00:00


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


def keep_out_of_range_dates(adapters: AdaptersMap) -> None:
    """Make `adapters` load a date or timestamp Python cannot hold as its text (text format)."""
    for typname, loader in _LOADERS.items():
        adapters.register_loader(typname, loader)


def load_again(cursor: psycopg.ServerCursor[Any]) -> list[Any]:
    """The rows of `cursor`'s last fetch (which its loaders refused), loaded again with loaders
    that keep out-of-range dates as text; rows are tuples, as the connector's cursors make."""
    result = cursor.pgresult
    if result is None:  # pragma: no cover - a fetch that failed to load has its result
        raise psycopg.InterfaceError("no fetched result to load again")
    keep_out_of_range_dates(cursor.adapters)
    loader = Transformer(cursor)
    loader.set_pgresult(result)
    return loader.load_rows(0, result.ntuples, tuple)
