"""Backoff delays: between tries of transient work inside a run, and between restarts of a
REALTIME task whose runs keep failing (so a broken source is not hammered every few seconds,
yet a fixed one is picked up again within minutes)."""

from __future__ import annotations

import datetime as dt

RESTART_FIRST_MS = 5_000
RESTART_MAX_MS = 300_000


def restart_delay_ms(failures: int) -> int:
    """How long after its last failed run a REALTIME task starts again, given how many runs in a
    row failed: 5 s after the first, doubling, at most 5 minutes."""
    if failures <= 1:
        return RESTART_FIRST_MS
    return min(RESTART_MAX_MS, RESTART_FIRST_MS << min(failures - 1, 16))


def restart_note(ended_ms: int, failures: int) -> str:
    """The remark a failed REALTIME run ends with: when the task will be tried again."""
    delay = restart_delay_ms(failures)
    at = dt.datetime.fromtimestamp((ended_ms + delay) / 1000, dt.UTC)
    return (
        f"next attempt at {at.isoformat(timespec='seconds').replace('+00:00', 'Z')} "
        f"(in {delay // 1000} s; {failures} failed run{'s' if failures != 1 else ''} in a row)"
    )
