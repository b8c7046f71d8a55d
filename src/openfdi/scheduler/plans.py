"""A stored plan, read once for both the planner and the API's `next_fire_times`."""

from __future__ import annotations

import logging

from openfdi.domain.schedule import Plan, PlanError, stored_plan
from openfdi.store.tables import DispatchRow

log = logging.getLogger(__name__)


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
    """The next `count` fires strictly after `now_ms`: the ones the planner will handle next.

    A plan stored before a stricter rule came in may no longer parse; the planner never fires
    it (and logs why), so it has no next fires to show, and showing it must not fail.
    """
    try:
        return plan_of(row).next_fire_ms(now_ms, count)
    except PlanError as exc:
        log.warning("plan of task %s no longer parses (%s): %s", row.task_id, exc.field, exc)
        return []
