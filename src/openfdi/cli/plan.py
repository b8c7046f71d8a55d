"""`openfdi plan show|set`: a TIMING task's scheduled plan (FDI "dispatches")."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from openfdi.cli._common import USAGE, JsonOpt, client, emit_json, fail

plan = typer.Typer(no_args_is_help=True, help="Scheduled plans of TIMING tasks.")


def _print(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(answer)
        return
    for key, value in answer.items():
        typer.echo(f"{key:18} {value if value not in (None, '') else '-'}")


@plan.command("show")
def show(ctx: typer.Context, task_id: str, as_json: JsonOpt = False) -> None:
    """The task's plan (exit 3 with the server's code when it has none)."""
    with client(ctx) as fdi:
        answer = fdi.show_plan(task_id)
    _print(answer, as_json)


@plan.command("set")
def set_(
    ctx: typer.Context,
    task_id: str,
    cron: Annotated[
        str | None, typer.Option(help='Quartz cron, 6 or 7 fields, e.g. "0 30 2 * * ?"')
    ] = None,
    period: Annotated[str | None, typer.Option(help="MIN, HOUR, DAY, WEEK or MON")] = None,
    every: Annotated[int, typer.Option(help="with --period: every N periods")] = 1,
    start: Annotated[
        int | None, typer.Option(help="first fire, epoch milliseconds [default: now]")
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone of the cron")] = None,
    misfire: Annotated[
        str | None, typer.Option(help="fire_once, skip or fire_all (openfdi extension)")
    ] = None,
    remark: Annotated[str | None, typer.Option(help="remark")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the task's plan, or change it if it has one."""
    import time

    from openfdi.client.fdi import FdiApiError

    if (cron is None) == (period is None):
        raise fail("give either --cron or --period", USAGE)
    body: dict[str, Any] = {
        "start_datetime": start if start is not None else int(time.time() * 1000),
        "use_quartz_cron": cron is not None,
    }
    if cron is not None:
        body["cron"] = cron
    else:
        body.update(period=period.upper() if period else None, dispatch_interval=every)
    for key, value in (
        ("cron_timezone", timezone),
        ("misfire_policy", misfire),
        ("remark", remark),
    ):
        if value is not None:
            body[key] = value
    with client(ctx) as fdi:
        try:
            existing = fdi.show_plan(task_id)
        except FdiApiError as exc:
            if exc.status != 404:
                raise
            existing = None
        if existing is None:
            answer = fdi.create_plan(task_id, body)
        else:
            answer = fdi.update_plan(task_id, existing["dispatch_id"], body)
    _print(answer, as_json)
