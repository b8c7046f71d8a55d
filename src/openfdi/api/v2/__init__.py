"""FDI v2 routers, one per resource group, under /v2/{project_id}/fdi/instances/{instance_id}."""

from __future__ import annotations

from typing import Any

from openfdi.wire.common import ErrorResponse

PREFIX = "/v2/{project_id}/fdi/instances/{instance_id}"

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad Request (FDI.3002, FDI.3033, ...)"},
    401: {"model": ErrorResponse, "description": "Unauthorized (APIG.0301, APIG.0307)"},
    404: {"model": ErrorResponse, "description": "Not Found"},
    413: {"model": ErrorResponse, "description": "Request entity too large (APIG.0201)"},
    500: {"model": ErrorResponse, "description": "Internal Server Error (FDI.9999)"},
    # Any other client error has the same body. Documenting the range also keeps FastAPI from
    # advertising its default 422 (HTTPValidationError), which openfdi never answers.
    "4XX": {"model": ErrorResponse, "description": "Other client errors (APIG/FDI body)"},
}
