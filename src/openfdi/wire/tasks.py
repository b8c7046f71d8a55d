"""Common tasks: create/update bodies, TaskBasicRsp, BriefTaskRespBean, statistics, monitors."""

from __future__ import annotations

from pydantic import BaseModel, Field

from openfdi.wire.common import WireModel


class TaskBasicRequest(WireModel):
    task_name: str
    task_type: str
    source_datasource_id: str
    target_datasource_id: str
    description: str | None = None
    task_tag: str | None = None


class CreateCommonTaskRequest(WireModel):
    task: TaskBasicRequest
    task_detail: str


class TaskBasicResponse(BaseModel):
    task_id: str
    task_name: str
    task_type: str = Field(description="lowercase: realtime | timing")
    status: str = Field(description="stop | running (desired state)")
    project_id: str
    source_datasource_id: str
    target_datasource_id: str
    source_datasource_name: str | None = None
    target_datasource_name: str | None = None
    source_app_id: str | None = None
    target_app_id: str | None = None
    source_app_name: str | None = None
    target_app_name: str | None = None
    created_date: int
    last_modified_date: int
    description: str | None = None
    task_tag: str | None = None


class CommonTaskResponse(BaseModel):
    task: TaskBasicResponse
    task_detail: str


class BriefTaskResponse(BaseModel):
    task_id: str
    task_name: str
    task_type: str = Field(description="REALTIME | TIMING")
    status: int = Field(description="0 stopped, 1 running (desired state)")
    created_date: str = Field(description="ISO-8601 UTC, e.g. 2026-11-23T07:38:25Z")
    version: str
    last_modified_time: int
    execute_status: str
    source_app_id: str | None = None
    target_app_id: str | None = None
    source_instance_id: str
    target_instance_id: str
    ext_type: str | None = None
    enterprise_project_id: str = "0"
    task_tag: str | None = None


class ListTasksResponse(BaseModel):
    total: int
    size: int
    entities: list[BriefTaskResponse]


class TaskStatisticDetails(BaseModel):
    running_tasks_count: int
    abnormal_tasks_count: int
    terminated_tasks_count: int
    completed_tasks_count: int


class CountTasksResponse(BaseModel):
    common_task_details: TaskStatisticDetails
    cdc_task_details: TaskStatisticDetails


class TaskMonitorInfo(BaseModel):
    task_id: str
    task_name: str
    task_type: str
    status: int
    last_execute_time: int | None = None
    use_quartz_cron: bool | None = None
    cron: str | None = None
    period: str | None = None
    dispatch_interval: int | None = None
    position: str | None = None
    execute_status: str
    source_app_id: str | None = None
    source_app_name: str | None = None
    source_instance_id: str
    target_app_id: str | None = None
    target_app_name: str | None = None
    target_instance_id: str
    ext_type: str | None = None
    enterprise_project_id: str = "0"
    task_tag: str | None = None
    next_fire_times: list[int] | None = Field(
        default=None, description="openfdi extension: the next fire times (epoch ms)"
    )


class ListMonitorInfosResponse(BaseModel):
    total: int
    size: int
    entities: list[TaskMonitorInfo]
