"""`openfdi serve | worker | migrate | admin | login | task | datasource | plan …`.

Imports are made inside the commands: `openfdi --version`, `openfdi task list` and every worker
process would otherwise load the web app, SQLAlchemy and the engine before doing anything
(seconds on a loaded machine, measured with `python -X importtime`).
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from openfdi import __version__
from openfdi.cli._common import Connection
from openfdi.cli.admin import admin
from openfdi.cli.datasource import datasource
from openfdi.cli.login import login
from openfdi.cli.plan import plan
from openfdi.cli.task import task

if TYPE_CHECKING:
    import threading

    from openfdi.services import identity
    from openfdi.settings import Settings

# rich_markup_mode=None: plain click help. Typer's rich panels print every option with its
# Python type, so a flag such as --demo read `--demo <bool>` as if it took a value.
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="openfdi: FDI-compatible data integration. Exit codes: 0 ok, 1 some items failed, "
    "2 usage error, 3 the server answered with an error code, 4 the server could not be reached.",
)
app.add_typer(admin, name="admin")
app.add_typer(task, name="task")
app.add_typer(datasource, name="datasource")
app.add_typer(plan, name="plan")
app.command("login")(login)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openfdi {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
    endpoint: Annotated[
        str | None, typer.Option(help="server URL (client verbs) [env: OPENFDI_ENDPOINT]")
    ] = None,
    project_id: Annotated[str | None, typer.Option(help="[env: OPENFDI_PROJECT_ID]")] = None,
    instance_id: Annotated[str | None, typer.Option(help="[env: OPENFDI_INSTANCE_ID]")] = None,
    ak: Annotated[str | None, typer.Option("--ak", help="access key [env: OPENFDI_AK]")] = None,
    sk: Annotated[str | None, typer.Option("--sk", help="secret key [env: OPENFDI_SK]")] = None,
    token: Annotated[
        str | None, typer.Option(help="X-Auth-Token instead of AK/SK [env: OPENFDI_TOKEN]")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="profile written by `openfdi login` [env: OPENFDI_PROFILE]")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(help="profiles file [env: OPENFDI_CONFIG_FILE]", dir_okay=False),
    ] = None,
) -> None:
    """openfdi: FDI-compatible data integration.

    The client verbs (login, task, datasource, plan) talk to a running server. Each connection
    value comes from the flag above, else the environment, else the profile file.
    """
    ctx.obj = Connection(endpoint, project_id, instance_id, ak, sk, token, profile, config_file)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _print_bootstrap(created: identity.Bootstrap) -> None:
    lines = [
        "openfdi: first start, created (shown once; keep the SK and password):",
        f"  project_id   {created.project_id}",
        f"  instance_id  {created.instance_id}",
        f"  user         {created.user}",
        f"  password     {created.password}",
        f"  AK           {created.ak}",
        f"  SK           {created.sk}",
    ]
    typer.echo("\n".join(lines), err=True)


def _migrate_in_child(settings: Settings) -> None:
    """Apply pending migrations in a child `openfdi migrate` (same environment), so that the
    long-running server never imports Alembic (openfdi.store.db.Database.migrate)."""
    import subprocess

    from openfdi.store.db import Database, head_revision

    db = Database(settings.resolved_database_url)
    try:
        pending = db.revision() != head_revision()
    finally:
        db.dispose()
    if pending:
        command = [sys.executable, "-m", "openfdi", "migrate"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - ours


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="address to listen on [default: $OPENFDI_HOST, else 127.0.0.1]"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="port to listen on [default: $OPENFDI_PORT, else 8080]"),
    ] = None,
    demo_mode: Annotated[
        bool,
        typer.Option("--demo", help="on first start, use the documented demo credentials and data"),
    ] = False,
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the API server (migrations are applied first)."""
    import uvicorn

    from openfdi.api.app import create_app
    from openfdi.cli.workers import WorkerProcesses
    from openfdi.domain.scope import Scope
    from openfdi.services import demo, identity
    from openfdi.services.runtime import Runtime
    from openfdi.settings import Settings

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = _settings_or_exit(Settings)
    # A flag wins over the environment (OPENFDI_HOST / OPENFDI_PORT, read by Settings), which
    # wins over the defaults.
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    overrides: dict[str, str] = {}
    if demo_mode:
        if not _is_loopback(host):
            typer.echo("--demo uses public credentials and listens on loopback only", err=True)
            raise typer.Exit(2)
        overrides = {
            "bootstrap_project_id": demo.DEMO_PROJECT_ID,
            "bootstrap_instance_id": demo.DEMO_INSTANCE_ID,
            "bootstrap_ak": demo.DEMO_AK,
            "bootstrap_sk": demo.DEMO_SK,
            "bootstrap_user": demo.DEMO_USER,
            "bootstrap_password": demo.DEMO_PASSWORD,
        }
    # Values from the environment win over the demo's, so a user can still fix their own.
    settings = settings.model_copy(
        update={k: v for k, v in overrides.items() if getattr(settings, k) is None}
    )
    _migrate_in_child(settings)
    runtime = Runtime.open(settings)
    created = identity.bootstrap(runtime)
    if created is not None:
        _print_bootstrap(created)
        if demo_mode:
            demo.install_demo(runtime, Scope(created.project_id, created.instance_id))
            typer.echo("openfdi: demo data sources and tasks created", err=True)
    typer.echo(demo.console_banner(host, port, demo_mode=demo_mode), err=True)
    workers = None
    if runtime.runs_in_worker_processes:
        workers = WorkerProcesses(settings.worker_processes, log_level)
        workers.start()
    try:
        uvicorn.run(
            create_app(runtime),
            host=host,
            port=port,
            access_log=access_log,
            log_level=log_level,
            timeout_graceful_shutdown=5,
        )
    finally:
        if workers is not None:
            workers.stop()


class ExecutorKind(enum.StrEnum):
    local = "local"
    celery = "celery"


@app.command()
def worker(
    migrate: Annotated[bool, typer.Option(help="apply migrations before starting")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    parent_pid: Annotated[
        int | None, typer.Option(hidden=True, help="exit when this process (serve) exits")
    ] = None,
    executor: Annotated[
        ExecutorKind | None,
        typer.Option(
            help="local: claim runs from the metadata database (this host's server made them); "
            "celery: take them from the broker (OPENFDI_CELERY_BROKER_URL), on any host "
            "[default: $OPENFDI_EXECUTOR, else local]"
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="celery: runs at once [default: $OPENFDI_RUN_WORKERS, else 8]"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="celery: serve this worker's run metrics (Prometheus) on this port; the "
            "server's /metrics counts only runs of its own host [default: none]",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="celery: the address of --metrics-port (0.0.0.0: every one)")
    ] = "127.0.0.1",
) -> None:
    """Execute runs: claim the ones nobody has claimed from the metadata database, or with
    `--executor celery` the ones the broker delivers (several hosts, see docs/operations.md).

    `openfdi serve` starts local ones itself with OPENFDI_WORKER_PROCESSES; start more by hand
    (same environment, same database) to add capacity. SIGTERM interrupts the runs and exits.
    """
    import signal

    from openfdi.cli.signals import closing_on_signals, ignore_from_now

    # First, before the imports and migrations that take a second or more on a busy host: a
    # SIGTERM that came earlier would kill the worker by the default action instead of stopping it.
    closing = closing_on_signals(signal.SIGTERM, signal.SIGINT)

    if (executor or _env_executor()) == ExecutorKind.celery:
        metrics = (metrics_host, metrics_port) if metrics_port is not None else None
        _celery_worker(migrate, log_level, concurrency, closing, metrics)
        return

    from openfdi.cli.workers import die_with_parent

    if parent_pid is not None:
        die_with_parent(parent_pid)

    from openfdi import memory
    from openfdi.services.control_loops import Worker
    from openfdi.services.runtime import Runtime
    from openfdi.settings import Settings

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    runtime = Runtime.open(Settings(), migrate=migrate)
    memory.freeze_startup_objects()
    try:
        Worker(runtime).run(closing)
    finally:
        ignore_from_now(signal.SIGTERM)  # stopping already: later ones would kill the clean-up
        runtime.close()  # stops the executor: running runs end interrupted, to be resumed


def _env_executor() -> ExecutorKind:
    from openfdi.settings import Settings

    return ExecutorKind(_settings_or_exit(Settings).executor)


def _settings_or_exit(build: Callable[[], Settings]) -> Settings:
    """The settings, or exit 2 with what is wrong (a celery executor without PostgreSQL…)."""
    import pydantic

    try:
        return build()
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            typer.echo(f"openfdi: {where + ': ' if where else ''}{message}", err=True)
        raise typer.Exit(2) from None


def _celery_worker(
    migrate: bool,
    log_level: str,
    concurrency: int | None,
    closing: threading.Event,
    metrics: tuple[str, int] | None,
) -> None:
    """A Celery worker on openfdi's app, its runs on threads of this process (run more
    processes for more cores). Once started, Celery handles SIGTERM (runs interrupted, then
    exit); one that came before (`closing`) exits before starting it."""
    import os
    import socket

    from openfdi.services.celery_worker import worker_app
    from openfdi.settings import Settings

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = _settings_or_exit(lambda: Settings(executor="celery"))
    if concurrency is not None:
        settings = settings.model_copy(update={"run_workers": concurrency})
    if migrate:
        from openfdi.store.db import Database

        db = Database(settings.resolved_database_url)
        try:
            db.migrate()
        finally:
            db.dispose()
    app = worker_app(settings)
    if closing.is_set():
        return
    if metrics is not None:
        from openfdi.engine.metrics import serve_this_process

        try:
            serve_this_process(*metrics)
        except OSError as exc:
            typer.echo(f"openfdi: --metrics-port {metrics[1]}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={settings.run_workers}",
            f"--loglevel={log_level.upper()}",
            f"--hostname=openfdi-{os.getpid()}@{socket.gethostname()}",
            # No start-up handshake with other workers (a second or more): openfdi needs no
            # revoked-id sync, the database decides what runs.
            "--without-mingle",
            "--without-gossip",
        ]
    )


@app.command()
def migrate() -> None:
    """Apply database migrations up to the newest."""
    from openfdi.services.runtime import Runtime
    from openfdi.settings import Settings

    runtime = Runtime.open(Settings())
    runtime.close()
    typer.echo("migrations applied")


def run() -> None:  # pragma: no cover - python -m entry
    sys.exit(app())
