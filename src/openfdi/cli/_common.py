"""What the client verbs share: where the server is and who we are (flags, then the
environment, then the profile file), error handling with the documented exit codes, output.

Exit codes: 0 ok; 1 some of several items failed (start/stop/delete of many tasks); 2 usage
(bad flags, nothing to connect to); 3 the server answered with an error code (printed as
`error: FDI.xxxx message`); 4 the server could not be reached.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from openfdi.client.fdi import FdiClient

OK, PARTIAL, USAGE, SERVER_ERROR, UNREACHABLE = 0, 1, 2, 3, 4

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")]


@dataclass
class Connection:
    """Connection flags of the root command (`openfdi --profile prod task list`)."""

    endpoint: str | None = None
    project_id: str | None = None
    instance_id: str | None = None
    ak: str | None = None
    sk: str | None = None
    token: str | None = None
    profile: str | None = None
    config_file: Path | None = None


def connection_of(ctx: typer.Context) -> Connection:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Connection) else Connection()


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@dataclass(frozen=True)
class Resolved:
    endpoint: str
    project_id: str
    instance_id: str
    ak: str | None
    sk: str | None
    token: str | None


def resolve(conn: Connection) -> Resolved:
    """Each value from the flag, else the environment (OPENFDI_*), else the profile; the
    credentials from the first of these that names any (see _credentials)."""
    from openfdi.client import profile
    from openfdi.settings import ClientSettings

    env = ClientSettings()
    name = conn.profile or env.profile
    path = conn.config_file or env.config_file
    try:
        saved = profile.load(path, name)
    except profile.ProfileFileError as exc:
        raise fail(str(exc), USAGE) from exc
    layers = (conn, env, saved)

    def first(field: str) -> str | None:
        return next((v for v in (getattr(s, field) for s in layers) if v), None)

    endpoint, project_id, instance_id = (
        first(f) for f in ("endpoint", "project_id", "instance_id")
    )
    missing = [
        flag
        for flag, value in (
            ("--endpoint / OPENFDI_ENDPOINT", endpoint),
            ("--project-id / OPENFDI_PROJECT_ID", project_id),
            ("--instance-id / OPENFDI_INSTANCE_ID", instance_id),
        )
        if not value
    ]
    creds = _credentials(layers)
    if creds is None:
        missing.append("--ak and --sk, or --token (OPENFDI_AK, OPENFDI_SK, OPENFDI_TOKEN)")
    if missing:
        raise fail(
            f"not configured (profile {name!r} in {path}): "
            + "; ".join(missing)
            + ". Run `openfdi login` or pass them.",
            USAGE,
        )
    assert endpoint
    assert project_id
    assert instance_id
    assert creds
    ak, sk, token = creds
    if ak and sk:
        token = None
    return Resolved(endpoint, project_id, instance_id, ak, sk, token)


def _credentials(layers: Sequence[Any]) -> tuple[str | None, str | None, str | None] | None:
    """(ak, sk, token) from the first layer naming an AK, SK or token: a token alone there
    wins over keys further down (`--token` over OPENFDI_AK); an AK or SK alone is completed
    from the layers below (`--sk` corrects the profile's secret)."""
    for i, layer in enumerate(layers):
        if not (layer.ak or layer.sk or layer.token):
            continue
        if layer.token and not (layer.ak or layer.sk):
            return None, None, layer.token
        ak = next((x.ak for x in layers[i:] if x.ak), None)
        sk = next((x.sk for x in layers[i:] if x.sk), None)
        return (ak, sk, None) if ak and sk else None
    return None


@contextmanager
def client(ctx: typer.Context) -> Iterator[FdiClient]:
    """The instance's client; a server error ends the command with exit 3, no answer with 4."""
    from openfdi.client.fdi import FdiApiError, FdiClient, FdiConnectionError

    r = resolve(connection_of(ctx))
    try:
        with FdiClient(
            r.endpoint, r.project_id, r.instance_id, ak=r.ak, sk=r.sk, token=r.token
        ) as fdi:
            yield fdi
    except FdiApiError as exc:
        raise fail(f"{exc.code} {exc.message}", SERVER_ERROR) from exc
    except FdiConnectionError as exc:
        raise fail(f"cannot reach the server: {exc}", UNREACHABLE) from exc


def emit_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    """Left-aligned columns, two spaces apart; empty cells as '-'."""
    cells = [[str(h) for h in header]] + [
        ["-" if c is None or c == "" else str(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def read_text_arg(value: str) -> str:
    """`@path` reads a file, `-` reads standard input, anything else is the text itself."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text()
        except OSError as exc:
            raise fail(f"cannot read {value[1:]}: {exc}", USAGE) from exc
    return value


def read_json_arg(value: str, what: str) -> Any:
    try:
        return json.loads(read_text_arg(value))
    except ValueError as exc:
        raise fail(f"{what} is not JSON: {exc}", USAGE) from exc
