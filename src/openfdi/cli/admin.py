"""`openfdi admin`: projects, instances, users and AK/SK, on the same database as the server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from openfdi.errors import FdiError

if TYPE_CHECKING:
    from openfdi.services.runtime import Runtime

admin = typer.Typer(no_args_is_help=True, help="Manage projects, instances, users and AK/SK.")
project = typer.Typer(no_args_is_help=True, help="Projects")
instance = typer.Typer(no_args_is_help=True, help="Instances")
user = typer.Typer(no_args_is_help=True, help="Users (for X-Auth-Token)")
credential = typer.Typer(no_args_is_help=True, help="AK/SK credentials")
for sub, name in (
    (project, "project"),
    (instance, "instance"),
    (user, "user"),
    (credential, "credential"),
):
    admin.add_typer(sub, name=name)

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]
ProjectOpt = Annotated[str, typer.Option("--project", help="project id")]


def _runtime() -> Runtime:
    # Imported here: the rest of the command line does not need the database layers.
    from openfdi.services.runtime import Runtime
    from openfdi.settings import Settings

    return Runtime.open(Settings())


def _out(as_json: bool, payload: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(payload) if as_json else text)


def _fail(exc: FdiError) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)
    return typer.Exit(2)


@project.command("create")
def project_create(
    name: Annotated[str, typer.Option(help="project name")], as_json: JsonOpt = False
) -> None:
    from openfdi.services import identity

    try:
        project_id = identity.create_project(_runtime(), name)
    except FdiError as exc:
        raise _fail(exc) from exc
    _out(as_json, {"project_id": project_id, "name": name}, project_id)


@instance.command("create")
def instance_create(
    project_id: ProjectOpt,
    name: Annotated[str, typer.Option(help="instance name")] = "default",
    as_json: JsonOpt = False,
) -> None:
    from openfdi.services import identity

    try:
        instance_id = identity.create_instance(_runtime(), project_id, name)
    except FdiError as exc:
        raise _fail(exc) from exc
    _out(as_json, {"instance_id": instance_id, "project_id": project_id}, instance_id)


@user.command("create")
def user_create(
    project_id: ProjectOpt,
    name: Annotated[str, typer.Option(help="user name")],
    password: Annotated[str, typer.Option(help="password (at least 8 characters)")],
    as_json: JsonOpt = False,
) -> None:
    from openfdi.services import identity

    try:
        user_id = identity.create_user(_runtime(), project_id, name, password)
    except FdiError as exc:
        raise _fail(exc) from exc
    _out(as_json, {"user_id": user_id, "name": name, "project_id": project_id}, user_id)


@credential.command("create")
def credential_create(project_id: ProjectOpt, as_json: JsonOpt = False) -> None:
    from openfdi.services import identity

    try:
        ak, sk = identity.create_credential(_runtime(), project_id)
    except FdiError as exc:
        raise _fail(exc) from exc
    _out(as_json, {"ak": ak, "sk": sk, "project_id": project_id}, f"AK {ak}\nSK {sk}")


@credential.command("list")
def credential_list(project_id: ProjectOpt, as_json: JsonOpt = False) -> None:
    from openfdi.services import identity

    creds = identity.list_credentials(_runtime(), project_id)
    rows = [{"ak": c.ak, "created_at": c.created_at, "revoked_at": c.revoked_at} for c in creds]
    text = "\n".join(f"{r['ak']}  {'revoked' if r['revoked_at'] else 'active'}" for r in rows)
    _out(as_json, {"project_id": project_id, "credentials": rows}, text or "(none)")


@credential.command("revoke")
def credential_revoke(
    project_id: ProjectOpt,
    ak: Annotated[str, typer.Option("--ak", help="access key to revoke")],
    as_json: JsonOpt = False,
) -> None:
    from openfdi.services import identity

    if not identity.revoke_credential(_runtime(), project_id, ak):
        typer.echo(f"error: no access key {ak} in project {project_id}", err=True)
        raise typer.Exit(2)
    _out(as_json, {"ak": ak, "revoked": True}, f"revoked {ak}")
