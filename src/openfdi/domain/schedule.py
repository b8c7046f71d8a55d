"""Scheduled plans ("dispatches"): period plans and 6-field Quartz cron, validated and evaluated.

Quartz counts days of the week 1-7 from Sunday and allows `?`; croniter counts 0-6 from Sunday.
`to_croniter` translates one into the other so that the cron arithmetic stays in a maintained
library rather than in hand-written date math.

Cron plans are evaluated the way Quartz evaluates them in `cron_timezone`: croniter walks the
*wall clock* of the zone (naive datetimes, no DST arithmetic of its own), and each wall time is
then placed on the time line as Quartz's `java.util.GregorianCalendar` places it:

- a wall time that does not exist (the hour skipped when DST starts) does not fire: a plan for
  02:30 every day has no fire on that day (Quartz: "2:05 AM may never occur, thus missed
  firings"); a plan that also matches 03:30 fires at 03:30 as usual;
- a wall time that exists twice (the hour repeated when DST ends) fires once, at its second
  occurrence (standard time), as Quartz does: the calendar resolves an ambiguous wall time to
  standard time.

Period plans are fixed durations from `start_datetime` (MIN, HOUR, DAY, WEEK: DST never moves
them, like a Quartz SimpleTrigger), or calendar months in UTC (MON, clamped to the month's end).

All fire times are epoch milliseconds (UTC).
"""

from __future__ import annotations

import calendar
import copy
import enum
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

MIN_START_MS = 946_684_800_000
MAX_START_MS = 2_147_512_447_000
_SCAN_LIMIT = 1_000
"""Wall times in a row a cron search may skip (nonexistent, filtered) before it gives up."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Period(enum.StrEnum):
    MIN = "MIN"
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MON = "MON"


_PERIOD_MS = {
    Period.MIN: 60_000,
    Period.HOUR: 3_600_000,
    Period.DAY: 86_400_000,
    Period.WEEK: 604_800_000,
}


class MisfirePolicy(enum.StrEnum):
    """What a plan does with fires that were not run on time (openfdi extension field)."""

    FIRE_ONCE = "fire_once"
    SKIP = "skip"
    FIRE_ALL = "fire_all"


class PlanError(ValueError):
    """A plan that cannot be evaluated; `field` names the offending wire field."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


_DOW_NUMBER = re.compile(r"(?<![#/A-Za-z0-9])([1-7])(?![0-9])")
_DOW_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_LAST_OF_WEEKDAY = re.compile(r"^([0-6]|[A-Z]{3})L$")
_NEAREST_WEEKDAY = re.compile(r"^([0-9]{1,2})W$")


def _quartz_dow_to_croniter(field: str) -> str:
    """Shift Quartz day-of-week numbers (1=SUN..7=SAT) to croniter's (0=SUN..6=SAT).

    Only day numbers are shifted: in `6#3` the `3` is an ordinal, and in `2/2` the step stays.
    Quartz's `6L` (last Friday of the month) is croniter's `L5`; `L` alone means Saturday.
    """
    if field == "?":
        return "*"
    field = field.upper()
    if field == "L":
        return "6"

    def shift(match: re.Match[str]) -> str:
        return str(int(match.group(1)) - 1)

    shifted = _DOW_NUMBER.sub(shift, field)
    last = _LAST_OF_WEEKDAY.match(shifted)
    if last:
        day = last.group(1)
        return f"L{_DOW_NAMES.get(day, day)}"
    if "L" in shifted:
        raise PlanError("cron", "in day-of-week, L stands alone or follows one day (6L)")
    return shifted


def _is_restricted(field: str) -> bool:
    return field not in ("*", "?")


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
    if _is_restricted(dom) and _is_restricted(dow):
        raise PlanError(
            "cron", "set day-of-month or day-of-week, not both: use '?' in one of them (Quartz)"
        )
    dom = "*" if dom == "?" else dom.upper()
    if dom == "LW" or dom.startswith("L-"):
        raise PlanError("cron", "LW and L-n in day-of-month are not supported; use L or nW")
    return " ".join((sec, minute, hour, dom, month, _quartz_dow_to_croniter(dow)))


def parse_timezone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PlanError("cron_timezone", f"unknown time zone {name!r}") from exc


def parse_misfire_policy(value: str | None) -> MisfirePolicy:
    try:
        return MisfirePolicy(value or MisfirePolicy.FIRE_ONCE.value)
    except ValueError as exc:
        names = ", ".join(p.value for p in MisfirePolicy)
        raise PlanError("misfire_policy", f"misfire_policy must be one of {names}") from exc


@dataclass(frozen=True, slots=True)
class _CronSpec:
    """A parsed cron: a croniter to copy (parsing costs far more than iterating)."""

    template: croniter
    nearest_weekday: int | None
    """The N of an `NW` day-of-month: Quartz does not fire in months shorter than N days."""


@functools.lru_cache(maxsize=4096)
def _cron_spec(quartz: str) -> _CronSpec:
    expression = to_croniter(quartz)
    try:
        template = croniter(expression, datetime(2000, 1, 1), second_at_beginning=True)
    except (CroniterError, ValueError, KeyError) as exc:
        raise PlanError("cron", f"cannot parse the Quartz cron {quartz!r}") from exc
    nearest = _NEAREST_WEEKDAY.match(expression.split()[3])
    return _CronSpec(template, int(nearest.group(1)) if nearest else None)


def _wall_to_ms(wall: datetime, zone: ZoneInfo) -> int | None:
    """Where a wall time of `zone` falls, as Quartz places it; None if it does not exist.

    An ambiguous wall time takes its later (standard-time) occurrence (fold=1).
    """
    placed = wall.replace(tzinfo=zone, fold=1)
    seconds = int(placed.timestamp())
    back = datetime.fromtimestamp(seconds, zone).replace(tzinfo=None, fold=0)
    return seconds * 1000 if back == wall else None


def _ms_to_wall(ms: int, zone: ZoneInfo) -> datetime:
    """The zone's wall time at `ms`, truncated to the second."""
    return datetime.fromtimestamp(ms // 1000, zone).replace(tzinfo=None, fold=0)


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated scheduled plan."""

    start_datetime_ms: int
    period: Period | None
    dispatch_interval: int | None
    use_quartz_cron: bool
    cron: str | None
    cron_timezone: str
    misfire_policy: MisfirePolicy = MisfirePolicy.FIRE_ONCE

    # --- the fire times

    def fires_after(self, after_ms: int) -> Iterator[int]:
        """Every fire time strictly after `after_ms`, ascending (never before the start)."""
        if self.use_quartz_cron:
            return self._cron_after(after_ms)
        return self._periods_after(after_ms)

    def fires_before(self, at_or_before_ms: int, count: int) -> list[int]:
        """The newest `count` fire times at or before `at_or_before_ms`, ascending."""
        if count <= 0 or at_or_before_ms < self.start_datetime_ms:
            return []
        if self.use_quartz_cron:
            return self._cron_before(at_or_before_ms, count)
        return self._periods_before(at_or_before_ms, count)

    def next_fire_ms(self, after_ms: int, count: int) -> list[int]:
        """The next `count` fire times strictly after `after_ms` (fewer if the plan ends)."""
        fires: list[int] = []
        for fire in self.fires_after(after_ms):
            fires.append(fire)
            if len(fires) >= count:
                break
        return fires

    def next_fire_times(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times strictly after `after` (UTC-aware datetimes)."""
        after_ms = (after - _EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding
        return [datetime.fromtimestamp(ms / 1000, UTC) for ms in self.next_fire_ms(after_ms, count)]

    # --- cron

    def _cron(self) -> tuple[croniter, _CronSpec, ZoneInfo]:
        assert self.cron is not None
        spec = _cron_spec(self.cron)
        return copy.copy(spec.template), spec, ZoneInfo(self.cron_timezone)

    @staticmethod
    def _fits(wall: datetime, spec: _CronSpec) -> bool:
        wday = spec.nearest_weekday
        return wday is None or wday <= _days_in_month(wall.year, wall.month)

    def _cron_after(self, after_ms: int) -> Iterator[int]:
        it, spec, zone = self._cron()
        after_ms = max(after_ms, self.start_datetime_ms - 1)
        it.set_current(_ms_to_wall(after_ms, zone), force=True)
        misses = 0
        while misses < _SCAN_LIMIT:
            try:
                wall = it.get_next(datetime)
            except CroniterError:  # no further match within croniter's horizon
                return
            fire = _wall_to_ms(wall, zone) if self._fits(wall, spec) else None
            if fire is None or fire <= after_ms:
                misses += 1
                continue
            misses = 0
            yield fire

    def _cron_before(self, at_or_before_ms: int, count: int) -> list[int]:
        it, spec, zone = self._cron()
        it.set_current(_ms_to_wall(at_or_before_ms, zone) + timedelta(seconds=1), force=True)
        fires: list[int] = []
        misses = 0
        while len(fires) < count and misses < _SCAN_LIMIT:
            try:
                wall = it.get_prev(datetime)
            except CroniterError:
                break
            fire = _wall_to_ms(wall, zone) if self._fits(wall, spec) else None
            if fire is not None and fire < self.start_datetime_ms:
                break
            if fire is None or fire > at_or_before_ms:
                misses += 1
                continue
            fires.append(fire)
        return fires[::-1]

    # --- periods

    def _nth(self, n: int) -> int:
        """The n-th fire (0-based) of a period plan."""
        assert self.period is not None
        assert self.dispatch_interval is not None
        if self.period is not Period.MON:
            return self.start_datetime_ms + n * self.dispatch_interval * _PERIOD_MS[self.period]
        start = datetime.fromtimestamp(self.start_datetime_ms // 1000, UTC)
        months = start.month - 1 + n * self.dispatch_interval
        year, month = start.year + months // 12, months % 12 + 1
        day = min(start.day, _days_in_month(year, month))
        fire = start.replace(year=year, month=month, day=day)
        return int(fire.timestamp()) * 1000 + self.start_datetime_ms % 1000

    def _index_at_or_before(self, ms: int) -> int:
        """The largest n with `_nth(n) <= ms` (ms at or after the start)."""
        assert self.period is not None
        assert self.dispatch_interval is not None
        if self.period is not Period.MON:
            step = self.dispatch_interval * _PERIOD_MS[self.period]
            return (ms - self.start_datetime_ms) // step
        start = datetime.fromtimestamp(self.start_datetime_ms // 1000, UTC)
        at = datetime.fromtimestamp(ms // 1000, UTC)
        n = max(0, ((at.year - start.year) * 12 + at.month - start.month) // self.dispatch_interval)
        while n > 0 and self._nth(n) > ms:
            n -= 1
        while self._nth(n + 1) <= ms:
            n += 1
        return n

    def _periods_after(self, after_ms: int) -> Iterator[int]:
        n = 0 if after_ms < self.start_datetime_ms else self._index_at_or_before(after_ms) + 1
        while True:
            yield self._nth(n)
            n += 1

    def _periods_before(self, at_or_before_ms: int, count: int) -> list[int]:
        last = self._index_at_or_before(at_or_before_ms)
        return [self._nth(n) for n in range(max(0, last - count + 1), last + 1)]


def stored_plan(
    *,
    start_datetime_ms: int,
    period: str | None,
    dispatch_interval: int | None,
    use_quartz_cron: bool,
    cron: str | None,
    cron_timezone: str,
    misfire_policy: str | None,
) -> Plan:
    """A plan as the database holds it (validated when it was written): no search for a fire."""
    if use_quartz_cron:
        if not cron:
            raise PlanError("cron", "cron is required when use_quartz_cron")
        _cron_spec(cron)
        parsed = None
    elif period is None or period not in Period.__members__ or not dispatch_interval:
        raise PlanError("period", "a period plan needs a period and a dispatch_interval")
    else:
        parsed = Period(period)
    return Plan(
        start_datetime_ms,
        parsed,
        None if use_quartz_cron else dispatch_interval,
        use_quartz_cron,
        cron if use_quartz_cron else None,
        parse_timezone(cron_timezone).key,
        parse_misfire_policy(misfire_policy),
    )


def build_plan(
    *,
    start_datetime_ms: int | None,
    period: str | None,
    dispatch_interval: int | None,
    use_quartz_cron: bool | None,
    cron: str | None,
    cron_timezone: str | None,
    misfire_policy: str | None = None,
) -> Plan:
    """Validate the wire fields of a dispatch; raise PlanError naming the first bad field."""
    if start_datetime_ms is None:
        raise PlanError("start_datetime", "start_datetime is required")
    if not MIN_START_MS <= start_datetime_ms <= MAX_START_MS:
        raise PlanError(
            "start_datetime", f"start_datetime must be between {MIN_START_MS} and {MAX_START_MS}"
        )
    zone = parse_timezone(cron_timezone)
    policy = parse_misfire_policy(misfire_policy)
    if use_quartz_cron:
        if not cron or not 8 <= len(cron) <= 255:
            raise PlanError("cron", "cron is required (8-255 characters) when use_quartz_cron")
        expression = to_croniter(cron)
        if not croniter.is_valid(expression, second_at_beginning=True):
            raise PlanError("cron", f"cannot parse the Quartz cron {cron!r}")
        plan = Plan(start_datetime_ms, None, None, True, cron, zone.key, policy)
        try:
            first = plan.next_fire_ms(int(datetime.now(UTC).timestamp() * 1000), 1)
        except PlanError:
            raise
        except Exception as exc:  # croniter raises several types for expressions it cannot use
            raise PlanError("cron", f"cannot evaluate the Quartz cron {cron!r}") from exc
        if not first:
            raise PlanError("cron", f"the Quartz cron {cron!r} never fires")
        return plan
    if not period:
        raise PlanError("period", "period is required unless use_quartz_cron is true")
    try:
        parsed = Period(period)
    except ValueError as exc:
        raise PlanError("period", "period must be one of MIN, HOUR, DAY, WEEK, MON") from exc
    if dispatch_interval is None or not 1 <= dispatch_interval <= 59:
        raise PlanError("dispatch_interval", "dispatch_interval must be between 1 and 59")
    return Plan(start_datetime_ms, parsed, dispatch_interval, False, None, zone.key, policy)
