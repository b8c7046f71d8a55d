"""Data sources."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from openfdi.api.auth import AuthFirstRoute, RuntimeDep, ScopeDep
from openfdi.api.params import Int, ObjectId, Text
from openfdi.api.v2 import ERRORS, PREFIX
from openfdi.services import datasources
from openfdi.wire.datasources import (
    DatasourceInfoRequest,
    DatasourceResponse,
    ListDatasourcesResponse,
)

router = APIRouter(
    prefix=PREFIX, tags=["Data Sources"], responses=ERRORS, route_class=AuthFirstRoute
)


@router.post(
    "/datasources",
    status_code=201,
    response_model=DatasourceResponse,
    summary="Create a data source",
)
async def create_datasource_info(
    scope: ScopeDep, rt: RuntimeDep, body: DatasourceInfoRequest
) -> DatasourceResponse:
    return await run_in_threadpool(datasources.create_datasource_info, rt, scope, body)


@router.get("/datasources", response_model=ListDatasourcesResponse, summary="List data sources")
async def list_datasources(
    scope: ScopeDep,
    rt: RuntimeDep,
    limit: Int = None,
    offset: Int = None,
    datasource_type: Text = None,
    name: Text = None,
    app_id: Text = None,
    sort_field: Text = None,
    sort_type: Text = None,
    custom_plugin_id: Text = None,
) -> ListDatasourcesResponse:
    return await run_in_threadpool(
        lambda: datasources.list_datasources(
            rt,
            scope,
            offset=offset,
            limit=limit,
            datasource_type=datasource_type,
            name=name,
            app_id=app_id,
            sort_type=(sort_type or "").upper() or None,
        )
    )


@router.get(
    "/datasources/{datasource_id}", response_model=DatasourceResponse, summary="Show a data source"
)
async def show_dataource_detail(
    scope: ScopeDep, rt: RuntimeDep, datasource_id: ObjectId
) -> DatasourceResponse:
    return await run_in_threadpool(datasources.show_datasource, rt, scope, datasource_id)


@router.put(
    "/datasources/{datasource_id}",
    response_model=DatasourceResponse,
    summary="Modify a data source",
)
async def update_datasource_info(
    scope: ScopeDep, rt: RuntimeDep, datasource_id: ObjectId, body: DatasourceInfoRequest
) -> DatasourceResponse:
    return await run_in_threadpool(
        datasources.update_datasource_info, rt, scope, datasource_id, body
    )


@router.delete(
    "/datasources/{datasource_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a data source",
)
async def delete_datasource_info_by_id(
    scope: ScopeDep, rt: RuntimeDep, datasource_id: ObjectId
) -> Response:
    await run_in_threadpool(datasources.delete_datasource_info_by_id, rt, scope, datasource_id)
    return Response(status_code=204)
