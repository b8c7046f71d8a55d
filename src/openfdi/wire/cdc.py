"""Composite (CDC) tasks: the multi-tasks bodies and answers, with the SDK's field names."""

from __future__ import annotations

from pydantic import BaseModel, Field

from openfdi.wire.common import WireModel


class MultiTaskExtInfo(WireModel):
    server_id: str | None = None


class MultiTaskColumnInfo(WireModel):
    field_name: str | None = None
    field_type: str | None = None
    field_length: str | None = None


class MappingInfo(WireModel):
    source_column: str | None = None
    source_column_type: str | None = None
    source_column_length: str | None = None
    target_column: str | None = None
    target_column_type: str | None = None
    target_column_length: str | None = None


class MultiTaskInitRequest(WireModel):
    ext_info: MultiTaskExtInfo | None = None
    source_datasource_id: str | None = None
    target_datasource_id: str | None = None
    task_id: str | None = None
    auto_mapping: bool | None = None


class MultiTaskRequest(WireModel):
    task_name: str | None = None
    task_id: str | None = None
    task_type: str | None = None
    description: str | None = None
    task_tag: str | None = None
    operation_types: list[str] | None = None
    source_app_id: str | None = None
    target_app_id: str | None = None


class MultiTaskUpdateRequest(WireModel):
    description: str | None = None
    task_tag: str | None = None
    operation_types: list[str] | None = None
    repulling_snapshot: bool | None = None


class MultiTaskMappingCreateRequest(WireModel):
    ext_info: MultiTaskExtInfo | None = None
    source_datasource_id: str | None = None
    target_datasource_id: str | None = None
    source_columns: list[MultiTaskColumnInfo] | None = None
    target_columns: list[MultiTaskColumnInfo] | None = None
    source_table: str | None = None
    target_table: str | None = None
    mapping_columns: list[MappingInfo] | None = None


class MultiTaskResetRequest(WireModel):
    date_from: int | None = None


class MultiTaskMappingElement(BaseModel):
    id: str
    source_table: str
    target_table: str
    updated_time: int
    mapping_percent: int = 100
    status: str = Field(description="AUTO | MANUAL")


class MultiTaskInitElement(BaseModel):
    task_id: str
    source_datasource_id: str
    target_datasource_id: str
    source_datasource_name: str
    target_datasource_name: str
    source_datasource_type: str
    target_datasource_type: str
    source_app_id: str | None = None
    target_app_id: str | None = None
    mappings: list[MultiTaskMappingElement]
    mappings_total_count: int


class MultiTaskIdResponse(BaseModel):
    task_id: str


class MappingIdResponse(BaseModel):
    mapping_id: str


class MessageResponse(BaseModel):
    message: str
