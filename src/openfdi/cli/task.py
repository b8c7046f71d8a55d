"""`openfdi task list|show|create|update|delete|start|stop|run|terminate|logs|watch`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from openfdi.cli._common import (
    OK,
    PARTIAL,
    USAGE,
    JsonOpt,
    client,
    emit_json,
    fail,
    read_text_arg,
    table,
)
from openfdi.cli.watch import watch

if TYPE_CHECKING:
    from openfdi.client.fdi import BatchItem

task = typer.Typer(no_args_is_help=True, help="Tasks: list, define, start and stop, follow runs.")

NameOpt = Annotated[str | None, typer.Option("--name", help="task name contains this")]
TypeOpt = Annotated[str | None, typer.Option("--type", help="TIMING or REALTIME")]
TagOpt = Annotated[str | None, typer.Option("--tag", help="task tag")]
StatusOpt = Annotated[str | None, typer.Option("--status", help="started or stopped")]
ExecOpt = Annotated[
    str | None,
    typer.Option("--execute-status", help="UNSTARTED, WAITING, RUNNING, SUCCESS, CANCELLED, ERROR"),
]
SourceOpt = Annotated[str | None, typer.Option("--source", help="source data source id")]
TargetOpt = Annotated[str | None, typer.Option("--target", help="target data source id")]

_STATUS = {"started": 1, "running": 1, "1": 1, "stopped": 0, "stop": 0, "0": 0}


def _filters(
    name: str | None,
    task_type: str | None,
    tag: str | None,
    status: str | None,
    execute_status: str | None = None,
    source: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    if status is not None and status.lower() not in _STATUS:
        raise fail(f"--status is started or stopped, not {status!r}", USAGE)
    return {
        "name": name,
        "task_type": task_type.lower() if task_type else None,
        "task_tag": tag,
        "status": _STATUS[status.lower()] if status is not None else None,
        "execute_status": execute_status,
        "source_datasource_id": source,
        "target_datasource_id": target,
    }


def _status_word(value: object) -> str:
    """`status` is 0/1 in lists and stop/running in a task's detail: one word for both."""
    if value in (0, "stop", "stopped"):
        return "stopped"
    if value in (1, "running"):
        return "started"
    return str(value)


@task.command("list")
def list_(
    ctx: typer.Context,
    name: NameOpt = None,
    task_type: TypeOpt = None,
    tag: TagOpt = None,
    status: StatusOpt = None,
    execute_status: ExecOpt = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    limit: Annotated[int, typer.Option(help="at most this many (0: all)")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List tasks, newest first, with their state and latest run's status."""
    query = _filters(name, task_type, tag, status, execute_status, source, target)
    with client(ctx) as fdi:
        rows: list[dict[str, Any]] = []
        for entity in fdi.iter_tasks(**query):
            rows.append(entity)
            if limit and len(rows) >= limit:
                break
    if as_json:
        emit_json(rows)
        return
    table(
        [
            (
                t["task_id"],
                t["task_name"],
                t["task_type"],
                _status_word(t.get("status")),
                t.get("execute_status"),
            )
            for t in rows
        ],
        ("TASK_ID", "NAME", "TYPE", "STATE", "LAST_RUN"),
    )


@task.command("show")
def show(ctx: typer.Context, task_id: str, as_json: JsonOpt = False) -> None:
    """A task's definition: source, target and task_detail."""
    with client(ctx) as fdi:
        answer = fdi.show_task(task_id)
    if as_json:
        emit_json(answer)
        return
    t = answer.get("task", {})
    for key in (
        "task_id",
        "task_name",
        "task_type",
        "status",
        "source_datasource_name",
        "source_datasource_id",
        "target_datasource_name",
        "target_datasource_id",
        "task_tag",
        "description",
    ):
        typer.echo(f"{key:24} {t.get(key) if t.get(key) not in (None, '') else '-'}")
    typer.echo(f"{'task_detail':24} {answer.get('task_detail', '')}")


def _body(
    name: str,
    task_type: str,
    source: str,
    target: str,
    detail: str,
    description: str | None,
    tag: str | None,
) -> dict[str, Any]:
    basic: dict[str, Any] = {
        "task_name": name,
        "task_type": task_type.upper(),
        "source_datasource_id": source,
        "target_datasource_id": target,
    }
    if description is not None:
        basic["description"] = description
    if tag is not None:
        basic["task_tag"] = tag
    return {"task": basic, "task_detail": read_text_arg(detail)}


DetailOpt = Annotated[
    str, typer.Option(help="task_detail JSON text; @file reads a file, - reads stdin")
]


@task.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="task name")],
    source: Annotated[str, typer.Option(help="source data source id")],
    target: Annotated[str, typer.Option(help="target data source id")],
    detail: DetailOpt,
    task_type: Annotated[str, typer.Option("--type", help="TIMING or REALTIME")] = "TIMING",
    description: Annotated[str | None, typer.Option(help="description")] = None,
    tag: TagOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a common (single-table) task; prints its id."""
    with client(ctx) as fdi:
        answer = fdi.create_task(_body(name, task_type, source, target, detail, description, tag))
    if as_json:
        emit_json(answer)
    else:
        typer.echo(answer["task"]["task_id"])


@task.command("update")
def update(
    ctx: typer.Context,
    task_id: str,
    name: Annotated[str | None, typer.Option(help="task name")] = None,
    source: SourceOpt = None,
    target: TargetOpt = None,
    detail: Annotated[
        str | None, typer.Option(help="task_detail JSON text; @file reads a file, - stdin")
    ] = None,
    task_type: TypeOpt = None,
    description: Annotated[str | None, typer.Option(help="description")] = None,
    tag: TagOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a task: what is not given is kept as it is."""
    with client(ctx) as fdi:
        current = fdi.show_task(task_id)
        t = current["task"]
        body = _body(
            name or t["task_name"],
            task_type or t["task_type"],
            source or t["source_datasource_id"],
            target or t["target_datasource_id"],
            detail if detail is not None else current.get("task_detail") or "{}",
            description if description is not None else t.get("description"),
            tag if tag is not None else t.get("task_tag"),
        )
        answer = fdi.update_task(task_id, body)
    if as_json:
        emit_json(answer)
    else:
        typer.echo(f"updated {task_id}")


def _report(items: list[BatchItem], verb: str, as_json: bool) -> None:
    """Each task's outcome, then exit 1 if any failed."""
    failed = [i for i in items if not i.ok]
    if as_json:
        emit_json(
            {
                "success_count": len(items) - len(failed),
                "failure_count": len(failed),
                "results": [
                    {
                        "task_id": i.task_id,
                        "task_name": i.task_name,
                        "ok": i.ok,
                        "error_code": i.code,
                        "error_msg": i.message,
                    }
                    for i in items
                ],
            }
        )
    else:
        for i in items:
            if i.ok:
                typer.echo(f"ok      {i.task_id}  {i.task_name or ''}".rstrip())
            else:
                typer.echo(f"failed  {i.task_id}  {i.code} {i.message}")
        typer.echo(f"{verb}: {len(items) - len(failed)}, failed: {len(failed)}")
    raise typer.Exit(PARTIAL if failed else OK)


def _start_or_stop(
    ctx: typer.Context,
    action: str,
    task_ids: list[str] | None,
    filters: dict[str, Any],
    as_json: bool,
) -> None:
    chosen = [v for v in filters.values() if v is not None]
    if not task_ids and not chosen:
        raise fail("give task ids, or a filter (--name, --tag, --type, --status)", USAGE)
    with client(ctx) as fdi:
        ids = list(task_ids or [])
        if chosen:
            ids += [t["task_id"] for t in fdi.iter_tasks(**filters)]
        if not ids:
            typer.echo("no task matches", err=True)
            raise typer.Exit(OK)
        items = fdi.start_or_stop(action, ids)
    _report(items, "started" if action == "start" else "stopped", as_json)


TaskIds = Annotated[list[str] | None, typer.Argument(help="task ids (any number)")]


@task.command("start")
def start(
    ctx: typer.Context,
    task_ids: TaskIds = None,
    name: NameOpt = None,
    task_type: TypeOpt = None,
    tag: TagOpt = None,
    status: StatusOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start tasks (batches of at most 10); each task's success or FDI error is printed.

    A TIMING task needs a plan: a batch holding one without is refused whole with FDI.3083
    (nothing of that batch changes), and its tasks are reported with that error."""
    _start_or_stop(ctx, "start", task_ids, _filters(name, task_type, tag, status), as_json)


@task.command("stop")
def stop(
    ctx: typer.Context,
    task_ids: TaskIds = None,
    name: NameOpt = None,
    task_type: TypeOpt = None,
    tag: TagOpt = None,
    status: StatusOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop tasks (batches of at most 10); each task's success or FDI error is printed."""
    _start_or_stop(ctx, "stop", task_ids, _filters(name, task_type, tag, status), as_json)


@task.command("delete")
def delete(
    ctx: typer.Context,
    task_ids: Annotated[list[str], typer.Argument(help="task ids")],
    as_json: JsonOpt = False,
) -> None:
    """Delete tasks, one call each; each task's success or FDI error is printed."""
    from openfdi.client.fdi import BatchItem, FdiApiError

    items: list[BatchItem] = []
    with client(ctx) as fdi:
        for task_id in task_ids:
            try:
                fdi.delete_task(task_id)
                items.append(BatchItem(task_id, None))
            except FdiApiError as exc:
                items.append(BatchItem(task_id, None, exc.code, exc.message))
    _report(items, "deleted", as_json)


@task.command("run")
def run(ctx: typer.Context, task_id: str, as_json: JsonOpt = False) -> None:
    """Run a task once now (`openfdi task watch` follows the run)."""
    with client(ctx) as fdi:
        fdi.run_task(task_id)
    if as_json:
        emit_json({"task_id": task_id, "run": "requested"})
    else:
        typer.echo(f"run requested for {task_id}")


@task.command("terminate")
def terminate(ctx: typer.Context, task_id: str, as_json: JsonOpt = False) -> None:
    """Stop the run in progress (the task stays started or stopped as it is)."""
    with client(ctx) as fdi:
        fdi.terminate_task(task_id)
    if as_json:
        emit_json({"task_id": task_id, "terminate": "requested"})
    else:
        typer.echo(f"terminate requested for {task_id}")


@task.command("logs")
def logs(
    ctx: typer.Context,
    task_id: str,
    limit: Annotated[int, typer.Option(help="newest runs to show")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """A task's run history (monitor-logs), newest first."""
    with client(ctx) as fdi:
        answer = fdi.monitor_logs(task_id, offset=1, limit=limit)
    entities = answer.get("entities") or []
    if as_json:
        emit_json(answer)
        return
    table(
        [
            (
                r["id"],
                r.get("execute_status"),
                r.get("data_count"),
                r.get("dirty_data_count"),
                r.get("spend_time"),
                r.get("remarks"),
            )
            for r in entities
        ],
        ("RUN_ID", "STATUS", "ROWS", "REFUSED", "MS", "REMARKS"),
    )


task.command("watch")(watch)
