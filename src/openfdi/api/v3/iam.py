"""`POST /v3/auth/tokens` and `GET /v3/projects`, enough for curl users and IAM-style clients."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from openfdi.api import query
from openfdi.api.auth import PrincipalDep, RuntimeDep, principal
from openfdi.api.v2 import ERRORS
from openfdi.errors import AuthenticationFailed
from openfdi.services import identity
from openfdi.wire.common import ErrorResponse
from openfdi.wire.iam import (
    IamNamed,
    IamProject,
    ListProjectsResponse,
    ProjectEntry,
    TokenBody,
    TokenRequest,
    TokenResponse,
)

router = APIRouter(prefix="/v3", tags=["IAM"], responses=ERRORS)


@router.post(
    "/auth/tokens",
    status_code=201,
    response_model=TokenResponse,
    summary="Get a token (X-Subject-Token header) with a user's password",
    responses={
        429: {"model": ErrorResponse, "description": "Too many failed sign-ins (APIG.0308)"}
    },
    dependencies=query.known_query_only(),
)
async def create_token(
    rt: RuntimeDep, body: TokenRequest, request: Request, response: Response
) -> TokenResponse:
    identity_ = body.auth.identity
    if "password" not in identity_.methods or identity_.password is None:
        raise AuthenticationFailed(detail="only the password method is supported")
    project = body.auth.scope.project if body.auth.scope else None
    issued = await run_in_threadpool(
        lambda: identity.issue_token(
            rt,
            user_name=identity_.password.user.name,  # type: ignore[union-attr]
            password=identity_.password.user.password,  # type: ignore[union-attr]
            project_id=project.id if project else None,
            project_name=project.name if project else None,
            client_address=request.client.host if request.client else None,
        )
    )
    response.headers["X-Subject-Token"] = issued.token
    domain = IamNamed(id=issued.project_id, name=issued.project_name)
    return TokenResponse(
        token=TokenBody(
            expires_at=identity.iso_utc(issued.expires_at_ms),
            issued_at=identity.iso_utc(issued.issued_at_ms),
            methods=["password"],
            project=IamProject(id=issued.project_id, name=issued.project_name, domain=domain),
            user=IamNamed(id=issued.user_id, name=issued.user_name),
        )
    )


@router.get(
    "/projects",
    response_model=ListProjectsResponse,
    summary="List the caller's projects",
    dependencies=query.known_query_only(Depends(principal)),
)
async def list_projects(
    rt: RuntimeDep,
    caller: PrincipalDep,
    name: Annotated[str | None, Query(max_length=64)] = None,
) -> ListProjectsResponse:
    found = await run_in_threadpool(identity.project_of, rt, caller.project_id)
    entries = []
    if found is not None and (name is None or name == found[1]):
        entries.append(ProjectEntry(id=found[0], name=found[1], domain_id=found[0]))
    return ListProjectsResponse(projects=entries)
