"""`openfdi task watch`: follow a task's run until it ends, and exit with its outcome.

The run is read from the task's run history (monitor-logs) every `--interval` seconds: rows
written, refused rows, elapsed time and the rate since the last look. On a terminal this is a
live line (rich); otherwise, or with --json, one line (one JSON object) per change. The server
does not report the source's size, so no percentage or ETA is shown.

Exit codes: 0 the run succeeded, 1 it ended in ERROR, 5 it was CANCELLED; 3 and 4 as for every
verb (server error, unreachable); 6 `--timeout` passed with the run still going.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from openfdi.cli._common import JsonOpt, client, fail

if TYPE_CHECKING:
    from openfdi.client.fdi import FdiClient

OUTCOME_EXIT = {"SUCCESS": 0, "ERROR": 1, "CANCELLED": 5}
TIMED_OUT = 6


def _latest(fdi: FdiClient, task_id: str) -> dict[str, Any] | None:
    entities = fdi.monitor_logs(task_id, offset=1, limit=1).get("entities") or []
    return dict(entities[0]) if entities else None


def _line(run: dict[str, Any], rate: float | None) -> str:
    elapsed = (run.get("spend_time") or 0) / 1000
    parts = [
        f"run {run['id']}",
        str(run.get("execute_status")),
        f"rows {run.get('data_count', 0)}",
        f"refused {run.get('dirty_data_count', 0)}",
    ]
    if rate is not None:
        parts.append(f"{rate:,.0f} rows/s")
    if elapsed:
        parts.append(f"{elapsed:.1f} s")
    return "  ".join(parts)


def watch(
    ctx: typer.Context,
    task_id: str,
    run: Annotated[bool, typer.Option("--run", help="start a run now, then follow it")] = False,
    interval: Annotated[float, typer.Option(help="seconds between two looks", min=0.05)] = 1.0,
    timeout: Annotated[
        float | None, typer.Option(help="give up after this many seconds (exit 6)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow the task's current (or newest) run until it ends; exit 0 SUCCESS, 1 ERROR,
    5 CANCELLED."""
    deadline = time.monotonic() + timeout if timeout is not None else None

    def expired() -> bool:
        return deadline is not None and time.monotonic() > deadline

    with client(ctx) as fdi:
        before = _latest(fdi, task_id)
        if run:
            fdi.run_task(task_id)
            # The new run is the newest entry whose id differs from the one seen before.
            current = before
            while current is None or (before is not None and current["id"] == before["id"]):
                if expired():
                    raise fail("the run did not appear before --timeout", TIMED_OUT)
                time.sleep(min(interval, 0.2))
                current = _latest(fdi, task_id)
        else:
            current = before
        if current is None:
            raise fail(f"task {task_id} has no run (use --run to start one)", 1)
        final = _follow(fdi, task_id, current, interval, expired, as_json)
    status = str(final.get("execute_status"))
    if not as_json:
        typer.echo(f"{status}: {final.get('remarks') or ''}".rstrip(": "))
    raise typer.Exit(OUTCOME_EXIT.get(status, 1))


def _follow(
    fdi: FdiClient,
    task_id: str,
    current: dict[str, Any],
    interval: float,
    expired: Any,
    as_json: bool,
) -> dict[str, Any]:
    live = not as_json and sys.stdout.isatty()
    progress = None
    if live:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        progress.start()
        bar = progress.add_task(_line(current, None), total=None)
    run_id = current["id"]
    last_rows, last_at, shown = int(current.get("data_count") or 0), time.monotonic(), ""
    try:
        while True:
            rows, now = int(current.get("data_count") or 0), time.monotonic()
            rate = (
                (rows - last_rows) / (now - last_at) if now > last_at and rows > last_rows else None
            )
            line = _line(current, rate)
            if progress is not None:
                progress.update(bar, description=line)
            elif as_json:
                snapshot = json.dumps(current, ensure_ascii=False)
                if snapshot != shown:
                    typer.echo(snapshot)
                    shown = snapshot
            elif line != shown:
                typer.echo(line)
                shown = line
            last_rows, last_at = rows, now
            if not current.get("status"):  # 0: the run is not active any more
                return current
            if expired():
                raise fail(f"run {run_id} still going at --timeout", TIMED_OUT)
            time.sleep(interval)
            newest = _find(fdi, task_id, run_id)
            current = newest or current
    finally:
        if progress is not None:
            progress.stop()


def _find(fdi: FdiClient, task_id: str, run_id: str) -> dict[str, Any] | None:
    """The run among the newest few (a scheduled run may have started since)."""
    for entity in fdi.monitor_logs(task_id, offset=1, limit=10).get("entities") or []:
        if entity.get("id") == run_id:
            return dict(entity)
    return None
