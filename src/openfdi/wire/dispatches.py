"""Scheduled plans (TaskDispatch)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from openfdi.wire.common import WireModel


class TaskDispatchRequest(WireModel):
    # The spec's example sends an ISO string; the SDK sends epoch ms. Both are accepted.
    start_datetime: int | str | None = None
    period: str | None = None
    dispatch_interval: int | None = None
    remark: str | None = Field(default=None, max_length=255)
    use_quartz_cron: bool | None = None
    cron: str | None = None
    cron_timezone: str | None = Field(default=None, description="IANA zone name, default UTC")
    misfire_policy: str | None = Field(
        default=None,
        description=(
            "openfdi extension: fire_once (default), skip or fire_all; what the plan does with "
            "fires missed while no scheduler ran. Left out on PUT: the stored policy is kept."
        ),
    )


class TaskDispatchResponse(BaseModel):
    dispatch_id: str
    task_id: str
    start_datetime: int
    period: str | None = None
    dispatch_interval: int | None = None
    created_date: int
    last_modified_date: int
    remark: str | None = None
    use_quartz_cron: bool
    cron: str | None = None
    cron_timezone: str
    misfire_policy: str = Field(
        default="fire_once", description="openfdi extension: fire_once, skip or fire_all"
    )
    next_fire_times: list[int] = Field(
        default_factory=list, description="openfdi extension: the next fire times (epoch ms)"
    )
