"""Authentication of FDI requests: SDK-HMAC-SHA256 signatures and IAM tokens.

Signatures are verified exactly as the SDK computes them: the headers it lists as signed (Host
and X-Sdk-Date among them, each sent once), the hash of the body as received (a declared
X-Sdk-Content-Sha256 must be that hash), the canonical URI with its trailing slash, the query as
the handlers read it, a bounded clock skew, and a constant-time comparison. The canonical form
itself lives in `openfdi.wire.signing`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from openfdi.api.params import InstanceId, ProjectId
from openfdi.domain.scope import Principal, Scope
from openfdi.errors import AuthenticationFailed, ProjectMismatch
from openfdi.services import identity
from openfdi.services.runtime import Runtime
from openfdi.wire import signing

# The two ways in, declared in the OpenAPI document (either one will do).
_token_header = APIKeyHeader(
    name="X-Auth-Token",
    auto_error=False,
    scheme_name="IamToken",
    description="An IAM token: the X-Subject-Token header of `POST /v3/auth/tokens`.",
)
_signature_header = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    scheme_name="AkSkSignature",
    description=(
        "An AK/SK signature, as the Huawei Cloud SDK computes it: "
        "`SDK-HMAC-SHA256 Access={AK}, SignedHeaders={names}, Signature={hex}`, with the "
        "`X-Sdk-Date` header (UTC, `YYYYMMDDTHHMMSSZ`) and `Host` among the signed headers. "
        "Use the SDK, or `openfdi.client.signed_client`: a browser cannot sign."
    ),
)
_SIGNATURE_FAILED = "verify aksk signature fail"


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _raw_path(request: Request) -> str:
    # The path as sent (still percent-encoded), as the client signed it. Not written as
    # scope.get("raw_path", default): that would build request.url on every request.
    raw: bytes | None = request.scope.get("raw_path")
    return (raw if raw is not None else request.url.path.encode()).decode("latin-1")


def _signed_header_values(request: Request, names: list[str]) -> dict[str, str] | None:
    """The value of each signed header, keyed by lowercase name; None if the list is unusable.

    Host and X-Sdk-Date must be signed. Each signed header must be sent exactly once: the
    canonical form has one value per name, and a duplicate would let the signature cover one
    value while the application reads another.
    """
    if not signing.REQUIRED_SIGNED_HEADERS.issubset(names):
        return None
    values = {}
    for name in names:
        sent = request.headers.getlist(name)
        if len(sent) != 1:
            return None
        values[name] = sent[0]
    return values


async def _verify_signature(request: Request, rt: Runtime, authorization: str) -> Principal:
    parsed = signing.parse_authorization(authorization)
    if parsed is None:
        raise AuthenticationFailed(detail=_SIGNATURE_FAILED)
    headers = _signed_header_values(request, parsed.signed_headers)
    if headers is None:
        raise AuthenticationFailed(
            detail=f"{_SIGNATURE_FAILED}: host and x-sdk-date must be "
            "signed, and each signed header sent once"
        )
    sdk_date = headers["x-sdk-date"]
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
    declared = request.headers.getlist(signing.CONTENT_HASH_HEADER)
    payload = None  # two declarations: neither is trusted
    if len(declared) <= 1:
        payload = signing.verified_payload_hash(
            body,
            declared[0] if declared else None,
            allow_unsigned=rt.settings.allow_unsigned_payload,
        )
    if payload is None:
        raise AuthenticationFailed(
            detail=f"{_SIGNATURE_FAILED}: the body does not match X-Sdk-Content-Sha256"
        )
    canonical = signing.canonical_request(
        request.method,
        _raw_path(request),
        # The query as the application reads it ('+' is a space), so the signature covers what
        # the handlers see: a '+' put in place of a signed %2B no longer passes.
        request.query_params.multi_items(),
        headers,
        parsed.signed_headers,
        body,
        payload=payload,
    )
    expected = signing.signature(secret_key, signing.string_to_sign(canonical, sdk_date))
    # Compared as bytes: compare_digest refuses a str with non-ASCII characters (a TypeError,
    # which would answer 500 to a forged header).
    if not hmac.compare_digest(expected.encode(), parsed.signature.encode()):
        raise AuthenticationFailed(detail=_SIGNATURE_FAILED)
    declared_projects = request.headers.getlist("x-project-id")
    if any(declared != project_id for declared in declared_projects):
        raise ProjectMismatch()
    return Principal(project_id=project_id, subject=parsed.access_key, via="aksk")


async def principal(
    request: Request,
    token: Annotated[str | None, Depends(_token_header)],
    authorization: Annotated[str | None, Depends(_signature_header)],
) -> Principal:
    """The authenticated caller, or 401 with an APIG body. A signature, when sent, is the one
    checked: a token beside a bad signature does not let the request in."""
    rt = runtime_of(request)
    if authorization:
        return await _verify_signature(request, rt, authorization)
    if token:
        return await run_in_threadpool(identity.principal_for_token, rt, token)
    raise AuthenticationFailed(detail="x-auth-token not found")


PrincipalDep = Annotated[Principal, Depends(principal)]


async def fdi_scope(
    request: Request,
    caller: PrincipalDep,
    project_id: ProjectId,
    instance_id: InstanceId,
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
                    caller = await principal(
                        request,
                        request.headers.get("x-auth-token"),
                        request.headers.get("authorization"),
                    )
                    params = request.path_params
                    await fdi_scope(request, caller, params["project_id"], params["instance_id"])
                raise

        return route
