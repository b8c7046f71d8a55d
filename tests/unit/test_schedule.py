"""Plans: validation of the wire fields, Quartz translation, period arithmetic at month ends."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from openfdi.domain.schedule import PlanError, build_plan, to_croniter

START = int(datetime(2026, 1, 31, 10, 0, tzinfo=UTC).timestamp() * 1000)


def plan(**fields):  # type: ignore[no-untyped-def]
    base = {
        "start_datetime_ms": START,
        "period": None,
        "dispatch_interval": None,
        "use_quartz_cron": False,
        "cron": None,
        "cron_timezone": None,
    }
    return build_plan(**{**base, **fields})


@pytest.mark.parametrize(
    ("quartz", "expected"),
    [
        ("0 30 12 * * ?", "0 30 12 * * *"),
        ("0 0 8 ? * 2-6", "0 0 8 * * 1-5"),
        ("0 0 12 ? * 6#3", "0 0 12 * * 5#3"),
        ("0 0 12 ? * MON-FRI", "0 0 12 * * MON-FRI"),
        ("0 0 0 L * ?", "0 0 0 L * *"),
        ("0 0 12 ? * 1,7", "0 0 12 * * 0,6"),
    ],
)
def test_quartz_to_croniter(quartz: str, expected: str) -> None:
    assert to_croniter(quartz) == expected


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"period": "DAY", "dispatch_interval": 0}, "dispatch_interval"),
        ({"period": "DAY", "dispatch_interval": 60}, "dispatch_interval"),
        ({"period": "YEAR", "dispatch_interval": 1}, "period"),
        ({}, "period"),
        ({"use_quartz_cron": True, "cron": "not a cron"}, "cron"),
        ({"use_quartz_cron": True, "cron": "0 0 12 ? * ?"}, "cron"),
        ({"use_quartz_cron": True, "cron": "0 0 12 * * ? 2030"}, "cron"),
        (
            {"use_quartz_cron": True, "cron": "0 0 12 * * ?", "cron_timezone": "Mars/Base"},
            "cron_timezone",
        ),
        ({"start_datetime_ms": 1, "period": "DAY", "dispatch_interval": 1}, "start_datetime"),
        ({"start_datetime_ms": None, "period": "DAY", "dispatch_interval": 1}, "start_datetime"),
    ],
)
def test_invalid_plans_name_the_field(fields: dict[str, object], bad_field: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan(**fields)
    assert caught.value.field == bad_field


def test_monthly_plan_clamps_to_month_end() -> None:
    monthly = plan(period="MON", dispatch_interval=1)
    after = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    fires = monthly.next_fire_times(after, 3)
    assert [f.date().isoformat() for f in fires] == ["2026-02-28", "2026-03-31", "2026-04-30"]


def test_interval_plan_counts_from_start() -> None:
    every_15_min = plan(period="MIN", dispatch_interval=15)
    after = datetime(2026, 3, 1, 0, 7, tzinfo=UTC)
    fires = every_15_min.next_fire_times(after, 2)
    assert fires == [
        datetime(2026, 3, 1, 0, 15, tzinfo=UTC),
        datetime(2026, 3, 1, 0, 30, tzinfo=UTC),
    ]


def test_first_fire_is_the_start_when_it_is_in_the_future() -> None:
    daily = plan(period="DAY", dispatch_interval=1)
    before = datetime(2026, 1, 1, tzinfo=UTC)
    assert daily.next_fire_times(before, 1) == [datetime(2026, 1, 31, 10, 0, tzinfo=UTC)]


def test_cron_in_a_time_zone() -> None:
    berlin_noon = plan(use_quartz_cron=True, cron="0 0 12 * * ?", cron_timezone="Europe/Berlin")
    fires = berlin_noon.next_fire_times(datetime(2026, 7, 1, tzinfo=UTC), 1)
    assert fires == [datetime(2026, 7, 1, 10, 0, tzinfo=UTC)]  # CEST is UTC+2


# --- fire times on an injected clock: every plan kind, month ends, leap days, DST, L / W / #

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ms(*args: int, tz: ZoneInfo | None = None, fold: int = 0) -> int:
    return int(datetime(*args, tzinfo=tz or UTC, fold=fold).timestamp() * 1000)  # type: ignore[misc]


def cron(expression: str, zone: str = "UTC", start: int = ms(2000, 1, 1)):  # type: ignore[no-untyped-def]
    return plan(start_datetime_ms=start, use_quartz_cron=True, cron=expression, cron_timezone=zone)


def walls(fires: list[int], zone: ZoneInfo) -> list[str]:
    """Fire times as wall-clock text of `zone`, with the zone's abbreviation."""
    return [datetime.fromtimestamp(f / 1000, zone).strftime("%m-%d %H:%M %Z") for f in fires]


def test_fires_after_is_strict_and_exact_to_the_millisecond() -> None:
    start = ms(2026, 1, 1) + 123
    every_3_hours = plan(start_datetime_ms=start, period="HOUR", dispatch_interval=3)
    assert every_3_hours.next_fire_ms(start - 1, 2) == [start, start + 3 * 3_600_000]
    assert every_3_hours.next_fire_ms(start, 1) == [start + 3 * 3_600_000]
    assert every_3_hours.fires_before(start + 3 * 3_600_000, 5) == [start, start + 3 * 3_600_000]
    assert every_3_hours.fires_before(start - 1, 5) == []


@pytest.mark.parametrize(
    ("period", "interval", "expected"),
    [
        ("MIN", 45, ["01-31 23:15", "02-01 00:00", "02-01 00:45"]),
        ("HOUR", 7, ["02-01 02:30", "02-01 09:30", "02-01 16:30"]),
        ("DAY", 3, ["02-02 22:30", "02-05 22:30", "02-08 22:30"]),
        ("WEEK", 2, ["02-13 22:30", "02-27 22:30", "03-13 22:30"]),
    ],
)
def test_interval_plans_run_across_month_ends(period: str, interval: int, expected: list) -> None:  # type: ignore[type-arg]
    p = plan(start_datetime_ms=ms(2026, 1, 30, 22, 30), period=period, dispatch_interval=interval)
    fires = p.next_fire_ms(ms(2026, 1, 31, 23, 0), 3)
    assert [
        datetime.fromtimestamp(f / 1000, UTC).strftime("%m-%d %H:%M") for f in fires
    ] == expected


def test_interval_plans_ignore_dst_they_are_fixed_durations() -> None:
    daily = plan(start_datetime_ms=ms(2026, 3, 27, 8, 0), period="DAY", dispatch_interval=1)
    fires = daily.next_fire_ms(ms(2026, 3, 27), 3)
    assert [b - a for a, b in itertools.pairwise(fires)] == [86_400_000] * 2
    assert walls(fires, BERLIN) == ["03-27 09:00 CET", "03-28 09:00 CET", "03-29 10:00 CEST"]


def test_monthly_plans_from_a_leap_day() -> None:
    leap = plan(start_datetime_ms=ms(2028, 2, 29, 6, 0), period="MON", dispatch_interval=12)
    fires = leap.next_fire_ms(ms(2028, 1, 1), 5)
    assert [datetime.fromtimestamp(f / 1000, UTC).date().isoformat() for f in fires] == [
        "2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28", "2032-02-29",
    ]  # fmt: skip
    monthly = plan(start_datetime_ms=ms(2028, 1, 30, 6, 0), period="MON", dispatch_interval=1)
    fires = monthly.next_fire_ms(ms(2028, 1, 31), 3)
    days = [datetime.fromtimestamp(f / 1000, UTC).date().isoformat() for f in fires]
    assert days == ["2028-02-29", "2028-03-30", "2028-04-30"]  # clamped, never drifting
    assert monthly.fires_before(ms(2028, 4, 30, 6, 0), 2) == fires[1:]


def test_a_plan_never_fires_before_its_start() -> None:
    start = ms(2026, 6, 15, 12, 0, 30)
    every_minute = cron("0 * * * * ?", start=start)
    assert every_minute.next_fire_ms(ms(2026, 1, 1), 1) == [ms(2026, 6, 15, 12, 1)]
    assert every_minute.fires_before(ms(2026, 6, 15, 12, 3), 10) == [
        ms(2026, 6, 15, 12, 1), ms(2026, 6, 15, 12, 2), ms(2026, 6, 15, 12, 3),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # L: the last day of the month, leap years included.
        ("0 0 12 L * ?", (2028, 1, 31, 13), ["2028-02-29", "2028-03-31", "2028-04-30"]),
        ("0 0 12 L 2 ?", (2026, 3, 1), ["2027-02-28", "2028-02-29", "2029-02-28"]),
        # 29 February only: leap years.
        ("0 0 12 29 2 ?", (2026, 1, 1), ["2028-02-29", "2032-02-29", "2036-02-29"]),
        # nW: the nearest weekday, never jumping a month; no fire in a month without day n.
        ("0 0 12 15W * ?", (2026, 2, 1), ["2026-02-16", "2026-03-16", "2026-04-15"]),
        ("0 0 12 1W * ?", (2026, 7, 31), ["2026-08-03", "2026-09-01", "2026-10-01"]),
        ("0 0 12 31W * ?", (2026, 4, 1), ["2026-05-29", "2026-07-31", "2026-08-31"]),
        # #: the n-th weekday of the month; no fire in a month without a fifth one.
        ("0 0 12 ? * 6#3", (2026, 1, 1), ["2026-01-16", "2026-02-20", "2026-03-20"]),
        ("0 0 12 ? * FRI#5", (2026, 1, 1), ["2026-01-30", "2026-05-29", "2026-07-31"]),
        # nL in day-of-week: the last such weekday; L alone is Saturday.
        ("0 0 12 ? * 6L", (2026, 1, 1), ["2026-01-30", "2026-02-27", "2026-03-27"]),
        ("0 0 12 ? * FRIL", (2026, 1, 1), ["2026-01-30", "2026-02-27", "2026-03-27"]),
        ("0 0 12 ? * L", (2026, 1, 1), ["2026-01-03", "2026-01-10", "2026-01-17"]),
        # Quartz day numbers and steps: 2/2 is Monday, Wednesday, Friday.
        ("0 0 12 ? * 2/2", (2026, 1, 4), ["2026-01-05", "2026-01-07", "2026-01-09"]),
        ("0 0 12 ? * 1,7", (2026, 1, 1), ["2026-01-03", "2026-01-04", "2026-01-10"]),
        ("0 0 12 ? JAN,MAR MON", (2026, 1, 26), ["2026-01-26", "2026-03-02", "2026-03-09"]),
    ],
)
def test_quartz_special_characters(expression: str, after: tuple, expected: list) -> None:  # type: ignore[type-arg]
    fires = cron(expression).next_fire_ms(ms(*after), 3)
    assert [datetime.fromtimestamp(f / 1000, UTC).date().isoformat() for f in fires] == expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("0 0 12 15 * MON", "not both"),  # Quartz refuses both days; croniter would OR them
        ("0 0 12 LW * ?", "not supported"),
        ("0 0 12 L-3 * ?", "not supported"),
        ("0 0 12 ? * 1L-2", "day-of-week"),
        ("0 0 12 30 2 ?", "never fires"),
    ],
)
def test_cron_refused_with_the_reason(expression: str, error: str) -> None:
    with pytest.raises(PlanError) as caught:
        cron(expression)
    assert caught.value.field == "cron"
    assert error in caught.value.detail


def test_misfire_policy_is_validated() -> None:
    assert plan(period="DAY", dispatch_interval=1).misfire_policy == "fire_once"
    assert plan(period="DAY", dispatch_interval=1, misfire_policy="fire_all").misfire_policy == (
        "fire_all"
    )
    with pytest.raises(PlanError) as caught:
        plan(period="DAY", dispatch_interval=1, misfire_policy="FIRE_ONCE")
    assert caught.value.field == "misfire_policy"


# DST, as Quartz handles it: a wall time the clocks skip does not fire; a wall time they repeat
# fires once, at standard time (the second occurrence).


def test_berlin_spring_forward_skips_the_missing_hour() -> None:
    daily_0230 = cron("0 30 2 * * ?", "Europe/Berlin")
    fires = daily_0230.next_fire_ms(ms(2026, 3, 28), 3)
    assert walls(fires, BERLIN) == ["03-28 02:30 CET", "03-30 02:30 CEST", "03-31 02:30 CEST"]
    hourly = cron("0 30 * * * ?", "Europe/Berlin").next_fire_ms(ms(2026, 3, 29, 0, 0), 3)
    assert walls(hourly, BERLIN) == ["03-29 01:30 CET", "03-29 03:30 CEST", "03-29 04:30 CEST"]
    assert hourly[1] - hourly[0] == 3_600_000  # one real hour apart


def test_berlin_fall_back_fires_a_repeated_wall_time_once_at_standard_time() -> None:
    daily_0230 = cron("0 30 2 * * ?", "Europe/Berlin")
    fires = daily_0230.next_fire_ms(ms(2026, 10, 24), 3)
    assert walls(fires, BERLIN) == ["10-24 02:30 CEST", "10-25 02:30 CET", "10-26 02:30 CET"]
    assert fires[1] == ms(2026, 10, 25, 1, 30)
    half_hourly = cron("0 0/30 * * * ?", "Europe/Berlin").next_fire_ms(ms(2026, 10, 24, 23), 5)
    assert walls(half_hourly, BERLIN) == [
        "10-25 01:30 CEST", "10-25 02:00 CET", "10-25 02:30 CET", "10-25 03:00 CET",
        "10-25 03:30 CET",
    ]  # fmt: skip


def test_berlin_fall_back_from_inside_the_first_pass_of_the_repeated_hour() -> None:
    """From 02:10 CEST the next quarter-hour fire is 02:15 CET, as Quartz computes it."""
    every_15 = cron("0 0/15 * * * ?", "Europe/Berlin")
    inside = ms(2026, 10, 25, 2, 10, tz=BERLIN, fold=0)
    assert walls(every_15.next_fire_ms(inside, 2), BERLIN) == ["10-25 02:15 CET", "10-25 02:30 CET"]
    assert walls(every_15.fires_before(ms(2026, 10, 25, 1, 16), 3), BERLIN) == [
        "10-25 01:45 CEST", "10-25 02:00 CET", "10-25 02:15 CET",
    ]  # fmt: skip


def test_new_york_transitions() -> None:
    daily_0230 = cron("0 30 2 * * ?", "America/New_York")
    spring = daily_0230.next_fire_ms(ms(2026, 3, 7), 2)
    assert walls(spring, NEW_YORK) == ["03-07 02:30 EST", "03-09 02:30 EDT"]  # 03-08 skipped
    daily_0130 = cron("0 30 1 * * ?", "America/New_York")
    fall = daily_0130.next_fire_ms(ms(2026, 10, 31), 3)
    assert walls(fall, NEW_YORK) == ["10-31 01:30 EDT", "11-01 01:30 EST", "11-02 01:30 EST"]
    assert fall[1] == ms(2026, 11, 1, 6, 30)
    hourly = cron("0 0 * * * ?", "America/New_York").next_fire_ms(ms(2026, 11, 1, 4, 30), 3)
    assert walls(hourly, NEW_YORK) == ["11-01 01:00 EST", "11-01 02:00 EST", "11-01 03:00 EST"]


def test_cron_fires_before_are_the_fires_after_reversed() -> None:
    p = cron("0 0/20 1-3 ? * MON-FRI", "Europe/Berlin")
    forward = p.next_fire_ms(ms(2026, 10, 22), 12)
    assert p.fires_before(forward[-1], 12) == forward
    assert p.fires_before(forward[-1] - 1, 11) == forward[:-1]
