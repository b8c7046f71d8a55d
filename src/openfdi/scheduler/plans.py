"""A stored plan, read once for both the planner and the API's `next_fire_times`."""

from __future__ import annotations

from openfdi.domain.schedule import Plan, stored_plan
from openfdi.store.tables import DispatchRow


def plan_of(row: DispatchRow) -> Plan:
    """The plan a dispatch row holds (PlanError if the row no longer parses)."""
    return stored_plan(
        start_datetime_ms=row.start_datetime,
        period=row.period,
        dispatch_interval=row.dispatch_interval,
        use_quartz_cron=row.use_quartz_cron,
        cron=row.cron,
        cron_timezone=row.cron_timezone,
        misfire_policy=row.misfire_policy,
    )


def next_fire_ms(row: DispatchRow, now_ms: int, count: int) -> list[int]:
    """The next `count` fires strictly after `now_ms`: the ones the planner will handle next."""
    return plan_of(row).next_fire_ms(now_ms, count)
