"""`openfdi datasource list|show|create|test|tables|columns`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from openfdi.cli._common import JsonOpt, client, emit_json, read_json_arg, table

datasource = typer.Typer(no_args_is_help=True, help="Data sources: list, define, test, browse.")


@datasource.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="name contains this")] = None,
    ds_type: Annotated[str | None, typer.Option("--type", help="MYSQL, POSTGRESQL, …")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List data sources."""
    with client(ctx) as fdi:
        answer = fdi.list_datasources(name=name, datasource_type=ds_type, limit=limit)
    entities = answer.get("entities") or []
    if as_json:
        emit_json(entities)
        return
    table(
        [(d["datasource_id"], d["datasource_name"], d["datasource_type"]) for d in entities],
        ("DATASOURCE_ID", "NAME", "TYPE"),
    )


@datasource.command("show")
def show(ctx: typer.Context, datasource_id: str, as_json: JsonOpt = False) -> None:
    """A data source (secrets are never sent back by the server)."""
    with client(ctx) as fdi:
        answer = fdi.show_datasource(datasource_id)
    if as_json:
        emit_json(answer)
        return
    for key, value in answer.items():
        if key != "content":
            typer.echo(f"{key:18} {value if value not in (None, '') else '-'}")
    for key, value in (answer.get("content") or {}).items():
        typer.echo(f"content.{key:10} {value}")


@datasource.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="data source name")],
    ds_type: Annotated[str, typer.Option("--type", help="MYSQL, POSTGRESQL, SQLITE, …")],
    content: Annotated[
        str,
        typer.Option(help='content JSON, e.g. {"host": …}; @file reads a file, - reads stdin'),
    ],
    description: Annotated[str | None, typer.Option(help="description")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a data source; prints its id."""
    body: dict[str, Any] = {
        "datasource_name": name,
        "datasource_type": ds_type.upper(),
        "content": read_json_arg(content, "--content"),
    }
    if description is not None:
        body["description"] = description
    with client(ctx) as fdi:
        answer = fdi.create_datasource(body)
    if as_json:
        emit_json(answer)
    else:
        typer.echo(answer["datasource_id"])


@datasource.command("test")
def probe(ctx: typer.Context, datasource_id: str, as_json: JsonOpt = False) -> None:
    """Test the connection: exit 0 when it works, 3 with the server's FDI.3016 reason if not."""
    with client(ctx) as fdi:
        answer = fdi.test_datasource(datasource_id)
    if as_json:
        emit_json(answer)
    else:
        typer.echo("connection ok" if answer.get("result") else f"result: {answer}")


Position = Annotated[str, typer.Option(help="SOURCE or TARGET")]


@datasource.command("tables")
def tables(
    ctx: typer.Context,
    datasource_id: str,
    filter_: Annotated[str | None, typer.Option("--filter", help="name contains this")] = None,
    position: Position = "SOURCE",
    as_json: JsonOpt = False,
) -> None:
    """Table names of a data source."""
    with client(ctx) as fdi:
        answer = fdi.tables(datasource_id, filter=filter_, position=position.upper())
    names = answer.get("tables") or []
    if as_json:
        emit_json(names)
    else:
        for name in names:
            typer.echo(name)


@datasource.command("columns")
def columns(
    ctx: typer.Context,
    datasource_id: str,
    table_name: Annotated[str, typer.Option("--table", help="table name")],
    position: Position = "SOURCE",
    as_json: JsonOpt = False,
) -> None:
    """Columns of a table: name, type, nullable, primary key."""
    with client(ctx) as fdi:
        answer = fdi.columns(datasource_id, table_name=table_name, position=position.upper())
    cols = answer.get("columns") or []
    if as_json:
        emit_json(cols)
        return
    table(
        [
            (c.get("field_name"), c.get("field_type"), c.get("null_able"), c.get("primary"))
            for c in cols
        ],
        ("NAME", "TYPE", "NULLABLE", "PRIMARY"),
    )
