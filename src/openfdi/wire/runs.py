"""Runs: run now, terminate, and the run history (monitor-logs)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RunTaskResponse(BaseModel):
    """The SDK's RunTaskResponse has no fields; openfdi adds the id of the run it started."""

    run_id: str = Field(description="openfdi extension: the run started")


class StopTaskResponse(BaseModel):
    message: str


class TaskMonitorDetailLog(BaseModel):
    """One step of a run (the SDK's TaskMonitorDetailLog): its reader or its writer."""

    id: str
    status: int = Field(description="step status code: reader 100-108, writer 500-507, other 900+")
    position: str = Field(description="ADAPTER | READER | WRITER")
    position_status: str | None = None
    stage: str = Field(description="the plugin: adapter, <type>reader, <type>writer")
    dirty_data_count: int
    data_count: int
    data_size: float
    data_size_unit: str
    spend_time: int | None = None
    remarks: str | None = None
    step_begin_time: int | None = None
    step_end_time: int | None = None


class TaskMonitorLog(BaseModel):
    id: str
    start_time: int | None = None
    dispatch_time: int | None = None
    end_time: int | None = None
    execute_status: str
    position: str | None = None
    position_status: str | None = None
    status: int
    dirty_data_count: int
    data_count: int
    data_size: float
    data_size_unit: str
    spend_time: int | None = None
    read_spend_time: int
    write_spend_time: int
    remarks: str | None = None
    detail_logs: list[TaskMonitorDetailLog] = Field(default_factory=list)


class ListMonitorLogResponse(BaseModel):
    total: int
    size: int
    entities: list[TaskMonitorLog]


class DirtyRow(BaseModel):
    row: str = Field(description="JSON array of the refused row's values")
    reason: str
    created_at: int


class ListDirtyRowsResponse(BaseModel):
    total: int
    size: int
    entities: list[DirtyRow]
