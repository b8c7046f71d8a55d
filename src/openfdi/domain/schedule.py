"""Scheduled plans ("dispatches"): period plans and 6-field Quartz cron, validated and evaluated.

Quartz counts days of the week 1-7 from Sunday and allows `?`; croniter counts 0-6 from Sunday.
`to_croniter` translates one into the other so that the cron arithmetic stays in a maintained
library rather than in hand-written date math.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MIN_START_MS = 946_684_800_000
MAX_START_MS = 2_147_512_447_000


class Period(enum.StrEnum):
    MIN = "MIN"
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MON = "MON"


class PlanError(ValueError):
    """A plan that cannot be evaluated; `field` names the offending wire field."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


_DOW_NUMBER = re.compile(r"(?<![#A-Za-z0-9])([1-7])(?![0-9])")


def _quartz_dow_to_croniter(field: str) -> str:
    """Shift Quartz day-of-week numbers (1=SUN..7=SAT) to croniter's (0=SUN..6=SAT).

    Only the day number is shifted: in `6#3` the `3` is an ordinal, and in `6L` the `L` stays.
    """
    if field == "?":
        return "*"

    def shift(match: re.Match[str]) -> str:
        return str(int(match.group(1)) - 1)

    return _DOW_NUMBER.sub(shift, field)


def to_croniter(quartz: str) -> str:
    """Translate a 6- or 7-field Quartz expression into croniter's seconds-first syntax."""
    fields = quartz.split()
    if len(fields) not in (6, 7):
        raise PlanError("cron", "a Quartz cron has 6 fields (sec min hour day month week) or 7")
    sec, minute, hour, dom, month, dow = fields[:6]
    if len(fields) == 7 and fields[6] not in ("*", "?"):
        raise PlanError("cron", "the year field is not supported; use * or leave it out")
    if dom == "?" and dow == "?":
        raise PlanError("cron", "day-of-month and day-of-week cannot both be '?'")
    dom = "*" if dom == "?" else dom
    return " ".join((sec, minute, hour, dom, month, _quartz_dow_to_croniter(dow)))


def parse_timezone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PlanError("cron_timezone", f"unknown time zone {name!r}") from exc


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated scheduled plan."""

    start_datetime_ms: int
    period: Period | None
    dispatch_interval: int | None
    use_quartz_cron: bool
    cron: str | None
    cron_timezone: str

    def next_fire_times(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times strictly after `after` (UTC-aware datetimes)."""
        start = datetime.fromtimestamp(self.start_datetime_ms / 1000, UTC)
        if self.use_quartz_cron:
            assert self.cron is not None
            zone = ZoneInfo(self.cron_timezone)
            base = max(after, start - timedelta(microseconds=1)).astimezone(zone)
            it = croniter(to_croniter(self.cron), base, second_at_beginning=True)
            return [it.get_next(datetime).astimezone(UTC) for _ in range(count)]
        assert self.period is not None
        assert self.dispatch_interval is not None
        fires: list[datetime] = []
        step = 0 if after < start else None
        if step is None:
            step = _periods_between(start, after, self.period, self.dispatch_interval)
        while len(fires) < count:
            fire = _add_periods(start, self.period, self.dispatch_interval * step)
            if fire > after:
                fires.append(fire)
            step += 1
        return fires


def _add_periods(start: datetime, period: Period, n: int) -> datetime:
    if period is Period.MIN:
        return start + timedelta(minutes=n)
    if period is Period.HOUR:
        return start + timedelta(hours=n)
    if period is Period.DAY:
        return start + timedelta(days=n)
    if period is Period.WEEK:
        return start + timedelta(weeks=n)
    months = start.month - 1 + n
    year, month = start.year + months // 12, months % 12 + 1
    day = min(start.day, _days_in_month(year, month))
    return start.replace(year=year, month=month, day=day)


def _days_in_month(year: int, month: int) -> int:
    nxt = datetime(year + month // 12, month % 12 + 1, 1)
    return (nxt - timedelta(days=1)).day


def _periods_between(start: datetime, after: datetime, period: Period, interval: int) -> int:
    """A step count at or just before `after`, so iteration starts close to it."""
    seconds = {Period.MIN: 60, Period.HOUR: 3600, Period.DAY: 86400, Period.WEEK: 604800}
    if period is Period.MON:
        months = (after.year - start.year) * 12 + after.month - start.month
        return max(0, months // interval - 1)
    elapsed = (after - start).total_seconds()
    return max(0, int(elapsed // (seconds[period] * interval)) - 1)


def build_plan(
    *,
    start_datetime_ms: int | None,
    period: str | None,
    dispatch_interval: int | None,
    use_quartz_cron: bool | None,
    cron: str | None,
    cron_timezone: str | None,
) -> Plan:
    """Validate the wire fields of a dispatch; raise PlanError naming the first bad field."""
    if start_datetime_ms is None:
        raise PlanError("start_datetime", "start_datetime is required")
    if not MIN_START_MS <= start_datetime_ms <= MAX_START_MS:
        raise PlanError(
            "start_datetime", f"start_datetime must be between {MIN_START_MS} and {MAX_START_MS}"
        )
    zone = parse_timezone(cron_timezone)
    if use_quartz_cron:
        if not cron or not 8 <= len(cron) <= 255:
            raise PlanError("cron", "cron is required (8-255 characters) when use_quartz_cron")
        expression = to_croniter(cron)
        if not croniter.is_valid(expression, second_at_beginning=True):
            raise PlanError("cron", f"cannot parse the Quartz cron {cron!r}")
        plan = Plan(start_datetime_ms, None, None, True, cron, zone.key)
        try:
            plan.next_fire_times(datetime.now(UTC), 1)
        except Exception as exc:  # croniter raises several types for never-firing expressions
            raise PlanError("cron", f"the Quartz cron {cron!r} never fires") from exc
        return plan
    if not period:
        raise PlanError("period", "period is required unless use_quartz_cron is true")
    try:
        parsed = Period(period)
    except ValueError as exc:
        raise PlanError("period", "period must be one of MIN, HOUR, DAY, WEEK, MON") from exc
    if dispatch_interval is None or not 1 <= dispatch_interval <= 59:
        raise PlanError("dispatch_interval", "dispatch_interval must be between 1 and 59")
    return Plan(start_datetime_ms, parsed, dispatch_interval, False, None, zone.key)
