"""`openfdi login`: check the connection values against the server and save them as a profile
(ClientSettings.config_file, mode 0600) for the other client verbs."""

from __future__ import annotations

from typing import Annotated

import typer

from openfdi.cli._common import (
    SERVER_ERROR,
    UNREACHABLE,
    USAGE,
    JsonOpt,
    connection_of,
    emit_json,
    fail,
)


def login(
    ctx: typer.Context,
    endpoint: Annotated[str | None, typer.Option(help="server URL, http://host:port")] = None,
    project_id: Annotated[str | None, typer.Option(help="project id")] = None,
    instance_id: Annotated[str | None, typer.Option(help="instance id")] = None,
    ak: Annotated[str | None, typer.Option("--ak", help="access key")] = None,
    sk: Annotated[str | None, typer.Option("--sk", help="secret key (prompted if missing)")] = None,
    user: Annotated[
        str | None, typer.Option(help="sign in as this user instead (a token is saved)")
    ] = None,
    password: Annotated[str | None, typer.Option(help="the user's password (prompted)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Save endpoint, project, instance and credentials as a profile, after checking them.

    With --ak (and --sk) the keys are saved and requests are signed. With --user a token is
    obtained with the password and saved (not the password); it expires, then log in again.
    Values not given are taken from the root flags, the environment and the existing profile.
    """
    from openfdi.client import profile as profiles
    from openfdi.client.fdi import FdiApiError, FdiClient, FdiConnectionError, sign_in
    from openfdi.settings import ClientSettings

    root = connection_of(ctx)
    env = ClientSettings()
    name = root.profile or env.profile
    path = root.config_file or env.config_file
    try:
        saved = profiles.load(path, name)
    except profiles.ProfileFileError as exc:
        raise fail(str(exc), USAGE) from exc

    def pick(flag: str | None, field: str) -> str | None:
        return flag or getattr(root, field) or getattr(env, field) or getattr(saved, field)

    endpoint = pick(endpoint, "endpoint") or "http://127.0.0.1:8080"
    project_id, instance_id = pick(project_id, "project_id"), pick(instance_id, "instance_id")
    if not project_id or not instance_id:
        raise fail("--project-id and --instance-id are needed", USAGE)
    token = expires = None
    try:
        if user is not None:
            secret = password or typer.prompt("password", hide_input=True)
            token, expires = sign_in(endpoint, user, secret, project_id)
            ak = sk = None
        else:
            ak = pick(ak, "ak")
            if not ak:
                raise fail("give --ak (and --sk) or --user", USAGE)
            sk = sk or root.sk or env.sk or saved.sk or typer.prompt("SK", hide_input=True)
        # One cheap signed call proves the endpoint, the instance and the credentials.
        with FdiClient(endpoint, project_id, instance_id, ak=ak, sk=sk, token=token) as fdi:
            fdi.list_tasks(limit=1)
    except FdiApiError as exc:
        raise fail(f"{exc.code} {exc.message}", SERVER_ERROR) from exc
    except FdiConnectionError as exc:
        raise fail(f"cannot reach the server: {exc}", UNREACHABLE) from exc
    profiles.save(
        path,
        name,
        profiles.Profile(
            endpoint=endpoint,
            project_id=project_id,
            instance_id=instance_id,
            ak=ak,
            sk=sk,
            token=token,
            token_expires_at=expires,
        ),
    )
    if as_json:
        emit_json({"profile": name, "config_file": str(path), "endpoint": endpoint})
    else:
        typer.echo(f"saved profile {name!r} in {path}")
