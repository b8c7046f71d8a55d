"""`create_app(runtime)`: the ASGI application of openfdi."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from openfdi import __version__, logs, memory
from openfdi.api import console, docs_pages, errors, query
from openfdi.api.auth import fdi_scope
from openfdi.api.context import Metrics, RequestContextMiddleware
from openfdi.api.engine_metrics import EngineCollector, RunsCollector
from openfdi.api.v2 import batch, cdc, datasources, dispatches, runs, tasks
from openfdi.api.v3 import iam
from openfdi.scheduler.planner import Planner
from openfdi.services.control_loops import Supervisor
from openfdi.services.runtime import Runtime
from openfdi.store.db import head_revision

OK = frozenset({"ok", "disabled"})


class Health(BaseModel):
    status: str
    version: str
    database: str


class Readiness(BaseModel):
    status: str
    """"ready", or "not ready" (503) with `reason`."""
    checks: dict[str, str]
    """database, migrations, engine: "ok" (or "disabled" for an engine turned off), else why not."""
    reason: str | None = None


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The engine runs beside the API: the supervisor's loops (scheduler, reconciler) and,
        # unless worker processes execute the runs, the executor's threads.
        logs.configure()  # again: uvicorn configured its own loggers after create_app
        supervisor = None
        if runtime.settings.engine_enabled:
            if not runtime.runs_in_worker_processes:
                runtime.start_engine()
            supervisor = Supervisor(runtime, planner=planner)
            supervisor.start()
        app.state.supervisor = supervisor
        memory.freeze_startup_objects()
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.close()
            runtime.stop_engine()

    app = FastAPI(
        lifespan=lifespan,
        title="openfdi",
        version=__version__,
        description=(
            "The FDI (Fast Data Integration) API of ROMA Connect, self-hosted. "
            "Authenticate with an SDK-HMAC-SHA256 signature (AK/SK) or an `X-Auth-Token` "
            "from `POST /v3/auth/tokens`."
        ),
        docs_url=None,  # served by docs_pages, with local assets
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.supervisor = None
    planner = None
    if runtime.settings.engine_enabled:
        threshold_ms = int(runtime.settings.misfire_threshold_seconds * 1000)
        planner = Planner(runtime.db, misfire_threshold_ms=threshold_ms)
    metrics = Metrics()
    metrics.registry.register(EngineCollector(runtime, planner))
    metrics.registry.register(RunsCollector(runtime))
    ProcessCollector(registry=metrics.registry)  # process_*: CPU, memory, open files
    PlatformCollector(registry=metrics.registry)  # python_info
    errors.install(app)
    docs_pages.install(app)
    console.install(app)
    # Every FDI route authenticates (and checks the path's scope) first, then refuses unknown
    # query parameters, then validates its own parameters and body.
    fdi_first = query.known_query_only(Depends(fdi_scope))
    for router in (batch.router, tasks.router, dispatches.router, datasources.router, runs.router):
        app.include_router(router, dependencies=fdi_first)
    app.include_router(cdc.router, dependencies=fdi_first)
    app.include_router(iam.router)

    @app.get("/healthz", response_model=Health, tags=["Operations"], summary="Liveness and DB")
    async def healthz() -> Health:
        def probe() -> None:
            with runtime.db.read() as session:
                session.execute(text("SELECT 1"))

        await run_in_threadpool(probe)
        return Health(status="ok", version=__version__, database=runtime.db.engine.dialect.name)

    def readiness() -> dict[str, str]:
        checks = {"database": "ok", "migrations": "ok", "engine": "ok"}
        try:
            with runtime.db.read() as session:
                session.execute(text("SELECT 1"))
            at = runtime.db.revision()  # None for a database it cannot read, so asked second
        except Exception as exc:  # whatever the driver raises: not ready, and why
            checks["database"] = f"unreachable: {type(exc).__name__}"
            checks["migrations"] = "unknown: the database is unreachable"
        else:
            head = head_revision()
            if at != head:
                checks["migrations"] = f"database at {at or 'no migration'}, openfdi needs {head}"
        if not runtime.settings.engine_enabled:
            checks["engine"] = "disabled"
        else:
            supervisor = app.state.supervisor
            if supervisor is None or not supervisor.running():
                checks["engine"] = "not running: the supervisor's loops have stopped"
            elif not runtime.runs_in_worker_processes and runtime.executor is None:
                checks["engine"] = "not running: no executor in this process"
        return checks

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["Operations"],
        summary="Readiness: database reachable, migrations at head, engine running",
        responses={503: {"model": Readiness, "description": "not ready, with the reason"}},
    )
    async def readyz() -> JSONResponse:
        checks = await run_in_threadpool(readiness)
        failed = [f"{name}: {state}" for name, state in checks.items() if state not in OK]
        body = Readiness(
            status="not ready" if failed else "ready",
            checks=checks,
            reason="; ".join(failed) or None,
        )
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503 if failed else 200)

    @app.get("/metrics", tags=["Operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=runtime.settings.max_body_bytes,
        metrics=metrics,
    )
    return app
