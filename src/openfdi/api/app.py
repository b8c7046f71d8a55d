"""`create_app(runtime)`: the ASGI application of openfdi."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from openfdi import __version__, memory
from openfdi.api import errors
from openfdi.api.context import Metrics, RequestContextMiddleware
from openfdi.api.engine_metrics import EngineCollector
from openfdi.api.v2 import batch, datasources, dispatches, runs, tasks
from openfdi.api.v3 import iam
from openfdi.scheduler.planner import Planner
from openfdi.services.runs import Supervisor
from openfdi.services.runtime import Runtime


class Health(BaseModel):
    status: str
    version: str
    database: str


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The engine runs beside the API: the supervisor's loops (scheduler, reconciler) and,
        # unless worker processes execute the runs, the executor's threads.
        supervisor = None
        if runtime.settings.engine_enabled:
            if not runtime.runs_in_worker_processes:
                runtime.start_engine()
            supervisor = Supervisor(runtime, planner=planner)
            supervisor.start()
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
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    planner = None
    if runtime.settings.engine_enabled:
        threshold_ms = int(runtime.settings.misfire_threshold_seconds * 1000)
        planner = Planner(runtime.db, misfire_threshold_ms=threshold_ms)
    metrics = Metrics()
    metrics.registry.register(EngineCollector(runtime, planner))
    errors.install(app)
    routers = (batch.router, tasks.router, dispatches.router, datasources.router, runs.router)
    for router in (*routers, iam.router):
        app.include_router(router)

    @app.get("/healthz", response_model=Health, tags=["Operations"], summary="Liveness and DB")
    async def healthz() -> Health:
        def probe() -> None:
            with runtime.db.read() as session:
                session.execute(text("SELECT 1"))

        await run_in_threadpool(probe)
        return Health(status="ok", version=__version__, database=runtime.db.engine.dialect.name)

    @app.get("/metrics", tags=["Operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=runtime.settings.max_body_bytes,
        metrics=metrics,
    )
    return app
