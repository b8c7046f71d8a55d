"""Error rendering: every error leaves as `{"error_code", "error_msg", "request_id"}`.

Exactly the FdiError catalogue reaches the wire. Validation errors become FDI.3002 naming the
field; routing errors become APIG.0101; anything unexpected is FDI.9999, logged with its
traceback and the request id, never shown to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openfdi.api.context import request_id_of
from openfdi.errors import (
    ApiNotFound,
    FdiError,
    InvalidParameters,
    MethodNotAllowed,
    RequestError,
    SystemError_,
)

log = logging.getLogger(__name__)

_UNPARSABLE_BODY = "There was an error parsing the body"


def render(request: Request, error: FdiError) -> JSONResponse:
    rid = request_id_of(request.scope)
    return JSONResponse(
        status_code=error.status,
        content={"error_code": error.code, "error_msg": error.message, "request_id": rid},
        headers={"X-Request-Id": rid},
    )


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "body"
        if err.get("type") == "json_invalid":
            parts.append("the request body is not valid JSON")
        elif err.get("type") == "model_attributes_type" or (not loc and err.get("type")):
            parts.append("the request body must be a JSON object")
        else:
            parts.append(f"[{where}] {err.get('msg', 'is invalid')}")
    return "; ".join(parts)


async def _on_fdi_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FdiError)
    return render(request, exc)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return render(request, InvalidParameters(detail=_describe(list(exc.errors()))))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return render(request, ApiNotFound())
    if exc.status_code == 405:
        return render(request, MethodNotAllowed())
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        # FastAPI's answer when decoding the body raised something other than a JSON syntax
        # error: a RecursionError from thousands of nested arrays, say.
        return render(request, InvalidParameters(detail="the request body cannot be decoded"))
    if exc.status_code < 500:
        return render(request, RequestError())
    return render(request, SystemError_())


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception(
        "unhandled error", extra={"request_id": request_id_of(request.scope)}, exc_info=exc
    )
    return render(request, SystemError_())


def install(app: FastAPI) -> None:
    app.add_exception_handler(FdiError, _on_fdi_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
