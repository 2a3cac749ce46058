"""Cron expressions: what they match, and the errors a bad line gets."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from conveyor import ConfigurationError, Conveyor
from conveyor.scheduler import CronExpression

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, tz: ZoneInfo | None = None) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz or UTC)


def test_steps_ranges_and_names() -> None:
    cron = CronExpression.parse("*/15 9-17 * * MON-FRI")
    assert cron.matches(at("2026-11-23T09:15"))  # a Monday
    assert cron.matches(at("2026-11-27T17:45"))  # a Friday
    assert not cron.matches(at("2026-11-23T09:10"))
    assert not cron.matches(at("2026-11-23T18:00"))
    assert not cron.matches(at("2026-11-28T09:15"))  # a Saturday


def test_lists_month_names_and_a_start_with_a_step() -> None:
    cron = CronExpression.parse("5/20 0,12 * jan,JUL *")
    assert cron.minutes == {5, 25, 45} and cron.hours == {0, 12} and cron.months == {1, 7}


def test_both_day_fields_restricted_means_either_day_fires() -> None:
    cron = CronExpression.parse("0 0 1 * MON")
    assert cron.matches(at("2026-12-01T00:00"))  # the 1st, a Tuesday
    assert cron.matches(at("2026-11-23T00:00"))  # a Monday, not the 1st
    assert not cron.matches(at("2026-11-24T00:00"))


def test_one_restricted_day_field_alone_decides() -> None:
    assert not CronExpression.parse("0 0 1 * *").matches(at("2026-11-23T00:00"))
    assert CronExpression.parse("0 0 */2 * *").matches(at("2026-11-23T00:00"))
    assert not CronExpression.parse("0 0 * * 0").matches(at("2026-11-23T00:00"))


def test_sunday_is_0_and_7_and_aliases_expand() -> None:
    sunday = at("2026-11-22T00:00")
    assert CronExpression.parse("0 0 * * 7").matches(sunday)
    assert CronExpression.parse("0 0 * * SUN").matches(sunday)
    assert CronExpression.parse("@weekly").matches(sunday)
    daily = CronExpression.parse("@daily")
    assert daily.minutes == {0} and daily.hours == {0} and daily.days == set(range(1, 32))
    assert CronExpression.parse("@hourly").matches(at("2026-11-23T13:00"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("61 * * * *", "minute field '61': 61 is out of range 0-59"),
        ("* * *", "has 3 fields; write five"),
        ("*/0 * * * *", "step '0' must be a whole number >= 1"),
        ("* 5-1 * * *", "range '5-1' runs backwards"),
        ("* * * FOO *", "'FOO' is not a number or a name such as JAN"),
        ("1,,2 * * * *", "empty list item"),
        ("* * 0 * *", "day of month field '0': 0 is out of range 1-31"),
        ("* * * * 8", "8 is out of range 0-7"),
        ("@often", "has 1 fields"),
    ],
)
def test_a_bad_line_is_refused_with_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        CronExpression.parse(line)
    assert message in str(caught.value)


def test_app_cron_checks_everything_at_import() -> None:
    app = Conveyor("sqlite:///:memory:")

    @app.task()
    def report(kind: str) -> None: ...

    with pytest.raises(ConfigurationError, match="missing required argument 'kind'"):
        app.cron("@daily")(report)  # kind is missing
    with pytest.raises(ConfigurationError, match="argument 0 is a set, which is not JSON"):
        app.cron("@daily", args=({1, 2},))(report)
    with pytest.raises(ConfigurationError, match="timezone 'Mars/Olympus' is unknown"):
        app.cron("@daily", args=("x",), timezone="Mars/Olympus")(report)
    with pytest.raises(ConfigurationError, match="max_lateness"):
        app.cron("@daily", args=("x",), max_lateness=5)
    with pytest.raises(ConfigurationError, match=r"goes above @app\.task"):
        app.cron("@daily")(print)  # type: ignore[arg-type]
    app.cron("@daily", args=("daily",))(report)
    with pytest.raises(ConfigurationError, match="already exists: give this one name="):
        app.cron("@hourly", args=("hourly",))(report)
    app.cron("@hourly", args=("hourly",), name="hourly report")(report)
    assert set(app.schedules) == {"report", "hourly report"}


def test_daylight_saving_skips_the_missing_hour_and_fires_the_repeated_one_once() -> None:
    app = Conveyor("sqlite:///:memory:")

    @app.task()
    def backup() -> None: ...

    app.cron("30 2 * * *", timezone="Europe/Paris")(backup)
    entry = app.schedules["backup"]
    spring = at("2026-03-29T00:00", PARIS).timestamp()  # 02:00-03:00 does not exist
    assert entry.due(spring, spring + 86_400) == []
    autumn = at("2026-10-25T00:00", PARIS).timestamp()  # 02:00-03:00 happens twice
    ticks = entry.due(autumn, autumn + 86_400)
    assert len(ticks) == 2 and ticks[1] - ticks[0] == 3600
    assert entry.key(ticks[0]) == entry.key(ticks[1]) == "cron:backup:2026-10-25T02:30"
    normal = at("2026-11-23T00:00", PARIS).timestamp()
    (tick,) = entry.due(normal, normal + 86_400)
    assert datetime.fromtimestamp(tick, PARIS).strftime("%H:%M") == "02:30"
