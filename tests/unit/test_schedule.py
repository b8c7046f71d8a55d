"""Plans: validation of the wire fields, Quartz translation, period arithmetic at month ends."""

from __future__ import annotations

from datetime import UTC, datetime

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
