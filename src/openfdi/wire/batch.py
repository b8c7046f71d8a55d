"""Batch start/stop: OperateTasksBean in, BatchStartOrStopTasksResponse out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from openfdi.wire.common import WireModel


class TaskBean(WireModel):
    task_id: str | None = Field(default=None, max_length=64)


class OperateTasksRequest(WireModel):
    action_id: Literal["start", "stop"]
    # At most 10 entries (the 2025-10-22 page); an empty or missing list is FDI.3150, decided
    # by the service after the action is known to be valid (fdi-api.md H.1 order).
    tasks: list[TaskBean] | None = Field(default=None, max_length=10, alias="list")


class TaskBeanFacade(BaseModel):
    task_id: str | None = None
    task_name: str | None = None
    error_code: str | None = None
    error_msg: str | None = None


class BatchStartOrStopTasksResponse(BaseModel):
    success_count: int
    failure_count: int
    success: list[TaskBeanFacade]
    failure: list[TaskBeanFacade]
