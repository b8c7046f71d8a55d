"""Unknown query parameters are refused: 400 FDI.3002 naming the parameter.

A misspelt filter (`?task_nmae=x`) would otherwise be dropped silently and answer every row. The
parameters a route knows are read from the route's own signature (what FastAPI declares in the
OpenAPI document), so there is no second list to keep in step.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute

from openfdi.errors import InvalidParameters

_ATTRIBUTE = "_openfdi_query_params"


def declared_query_params(route: APIRoute) -> frozenset[str]:
    """The query parameter names (aliases) of `route`, its dependencies' included."""
    # Worked out once, and kept on the route itself (routes are not hashable).
    known: frozenset[str] | None = getattr(route, _ATTRIBUTE, None)
    if known is None:
        known = frozenset(_query_names(route.dependant))
        setattr(route, _ATTRIBUTE, known)
    return known


def _query_names(dependant: Dependant) -> set[str]:
    names = {str(field.alias) for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def refuse_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.scope.get("query_string"):
        return
    known = declared_query_params(route)
    unknown = sorted({name for name in request.query_params if name not in known})
    if unknown:
        raise InvalidParameters(
            # At most three names, each cut short: the message echoes what the client sent.
            detail="; ".join(
                f"[{n[:64]}] is not a query parameter of this API" for n in unknown[:3]
            )
        )


def known_query_only(*before: DependsParam) -> list[DependsParam]:
    """Route dependencies: `before` (authentication, which answers first), then the check."""
    return [*before, Depends(refuse_unknown_query)]
