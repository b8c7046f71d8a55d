"""Pagination rules of the FDI list endpoints (fdi-api.md H.3)."""

from __future__ import annotations

from dataclasses import dataclass

from openfdi.errors import InvalidParameters

MAX_LIMIT = 999
# Skipping more records than any table holds gives an empty page; the bound keeps the value
# inside a 64-bit SQL integer (a larger Python int made SQLite raise, a 500).
MAX_SKIP = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Page:
    offset: int  # records to skip
    limit: int


def record_page(offset: int | None, limit: int | None) -> Page:
    """tasks, datasources: `offset` counts records (negative means 0); limit 1..999, default 10."""
    limit = 10 if limit is None else limit
    if limit < 1:
        raise InvalidParameters(detail="limit must be at least 1")
    return Page(offset=min(max(0, offset or 0), MAX_SKIP), limit=min(limit, MAX_LIMIT))


def numbered_page(offset: int | None, limit: int | None) -> Page:
    """task-monitors, monitor-logs: `offset` is a 1-based page number of `limit` records."""
    page = 1 if offset is None else offset
    if page < 1:
        raise InvalidParameters(detail="offset is a page number and must be at least 1")
    size = 10 if limit is None else limit
    if size < 1:
        raise InvalidParameters(detail="limit must be at least 1")
    size = min(size, MAX_LIMIT)
    return Page(offset=min((page - 1) * size, MAX_SKIP), limit=size)


def like_pattern(fragment: str) -> str:
    """A LIKE pattern matching `fragment` literally anywhere (escape character is '\\')."""
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
