"""Data sources: DatasourceInfo in, DataSourceRsp out. `content` varies by type and is kept open."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from openfdi.wire.common import WireModel


class DatasourceInfoRequest(WireModel):
    datasource_name: str
    datasource_type: str
    app_id: str | None = None
    content: dict[str, Any] | None = None
    description: str | None = None


class DatasourceResponse(BaseModel):
    datasource_id: str
    datasource_name: str
    datasource_type: str
    vpc_id: str | None = None
    app_id: str | None = None
    app_name: str | None = None
    instance_id: str
    create_time: int
    update_time: int
    custom_plugin_id: str | None = None
    content: dict[str, Any]
    description: str | None = None
    app_permission: list[str] | None = None


class ListDatasourcesResponse(BaseModel):
    total: int
    size: int
    entities: list[DatasourceResponse]


class StartTestDatasourceResponse(BaseModel):
    result: bool


class ListDatasourceTablesResponse(BaseModel):
    tables: list[str]


class ColumnInfo(BaseModel):
    field_name: str
    field_type: str
    field_length: str | None = None
    null_able: str
    is_partition: bool = False
    primary: str
    unique: str
    decimal_digits: str | None = None


class ListDatasourceColumnsResponse(BaseModel):
    columns: list[ColumnInfo]
