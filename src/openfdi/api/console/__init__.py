"""The web console at /console: server-rendered pages (Jinja2) with htmx, on the same services
and project scoping as the API. Every asset ships in this package (static/), nothing from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openfdi.api.console.routes import router

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(router)
