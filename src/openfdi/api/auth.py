"""Authentication of FDI requests: SDK-HMAC-SHA256 signatures and IAM tokens.

Signatures are verified exactly as the SDK computes them: the headers it lists as signed, the
raw body's hash, the canonical URI with its trailing slash, a bounded clock skew, and a
constant-time comparison. The canonical form itself lives in `openfdi.wire.signing`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from openfdi.domain.scope import Principal, Scope
from openfdi.errors import AuthenticationFailed, ProjectMismatch
from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.wire import signing

_token_header = APIKeyHeader(name="X-Auth-Token", auto_error=False, scheme_name="IamToken")
_SIGNATURE_FAILED = "verify aksk signature fail"


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _query_pairs(raw: bytes) -> list[tuple[str, str]]:
    # Decoded with unquote (not unquote_plus): the SDK sends spaces as %20, and '+' as %2B.
    pairs = []
    for part in raw.decode("latin-1").split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def _raw_path(request: Request) -> str:
    # The path as sent (still percent-encoded), as the client signed it. Not written as
    # scope.get("raw_path", default): that would build request.url on every request.
    raw: bytes | None = request.scope.get("raw_path")
    return (raw if raw is not None else request.url.path.encode()).decode("latin-1")


async def _verify_signature(request: Request, rt: Runtime, authorization: str) -> Principal:
    parsed = signing.parse_authorization(authorization)
    if parsed is None or "x-sdk-date" not in parsed.signed_headers:
        raise AuthenticationFailed(detail=_SIGNATURE_FAILED)
    sdk_date = request.headers.get("x-sdk-date", "")
    signed_at = signing.parse_date(sdk_date)
    if signed_at is None:
        raise AuthenticationFailed(detail=_SIGNATURE_FAILED)
    skew = abs(rt.clock_ms() / 1000 - signed_at.timestamp())
    if skew > rt.settings.signature_max_skew_seconds:
        raise AuthenticationFailed(detail=f"{_SIGNATURE_FAILED}: request time out of range")
    found = await run_in_threadpool(identity.secret_key_for, rt, parsed.access_key)
    if found is None:
        raise AuthenticationFailed(detail=_SIGNATURE_FAILED)
    project_id, secret_key = found
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    canonical = signing.canonical_request(
        request.method,
        _raw_path(request),
        _query_pairs(request.scope.get("query_string", b"")),
        headers,
        parsed.signed_headers,
        body,
    )
    expected = signing.signature(secret_key, signing.string_to_sign(canonical, sdk_date))
    if not hmac.compare_digest(expected, parsed.signature):
        raise AuthenticationFailed(detail=_SIGNATURE_FAILED)
    declared_project = headers.get("x-project-id")
    if declared_project is not None and declared_project != project_id:
        raise ProjectMismatch()
    return Principal(project_id=project_id, subject=parsed.access_key, via="aksk")


async def principal(
    request: Request, token: Annotated[str | None, Depends(_token_header)]
) -> Principal:
    """The authenticated caller, or 401 with an APIG body."""
    rt = runtime_of(request)
    authorization = request.headers.get("authorization")
    if authorization:
        return await _verify_signature(request, rt, authorization)
    if token:
        return await run_in_threadpool(identity.principal_for_token, rt, token)
    raise AuthenticationFailed(detail="x-auth-token not found")


PrincipalDep = Annotated[Principal, Depends(principal)]


async def fdi_scope(
    request: Request,
    caller: PrincipalDep,
    project_id: Annotated[str, Path(max_length=64)],
    instance_id: Annotated[str, Path(max_length=64)],
) -> Scope:
    """Authenticate, then check the path's project and instance against the caller."""
    rt = runtime_of(request)
    # Nearly always the instance is known already: answer without a trip to the threadpool.
    known = identity.known_scope(rt, caller, project_id, instance_id)
    if known is not None:
        return known
    return await run_in_threadpool(identity.resolve_scope, rt, caller, project_id, instance_id)


async def _runtime(request: Request) -> Runtime:
    # Async on purpose: FastAPI sends a sync dependency to the threadpool, a round trip
    # between threads that costs far more than reading an attribute.
    return runtime_of(request)


ScopeDep = Annotated[Scope, Depends(fdi_scope)]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]


class AuthFirstRoute(APIRoute):
    """Authentication comes before body validation (fdi-api.md H.1.1), even for bad JSON.

    FastAPI decodes a JSON body before it runs any dependency, so a request with malformed
    JSON and no (or wrong) credentials would get 400 instead of 401. When the body is not
    JSON, authenticate and check the scope first; only an authorised caller sees the 400.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if any(err.get("type") == "json_invalid" for err in exc.errors()):
                    caller = await principal(request, request.headers.get("x-auth-token"))
                    params = request.path_params
                    await fdi_scope(request, caller, params["project_id"], params["instance_id"])
                raise

        return route
