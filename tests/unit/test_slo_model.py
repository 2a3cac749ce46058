"""The SLO model: declarations, the SRE workbook's thresholds, and the Prometheus rules."""

from __future__ import annotations

import pytest
import yaml

from conveyor import ConfigurationError, Conveyor
from conveyor.observability.rules import prometheus_rules
from conveyor.observability.slo import BURN_RULES, parse_window


def test_burn_thresholds_are_the_sre_workbooks_for_a_30_day_window() -> None:
    month = parse_window("30d")
    assert [round(rule.threshold(month), 6) for rule in BURN_RULES] == [14.4, 6.0, 1.0]
    assert [(r.severity, r.name) for r in BURN_RULES] == [
        ("page", "1h/5m"), ("page", "6h/30m"), ("ticket", "3d/6h")
    ]
    # Budget fractions, not fixed rates: a 7-day window pages at 3.36x over 1h.
    assert round(BURN_RULES[0].threshold(parse_window("7d")), 6) == 3.36


@pytest.mark.parametrize(
    ("window", "seconds"), [("30d", 2_592_000.0), ("12h", 43_200.0), ("90m", 5_400.0),
                            ("2w", 1_209_600.0), (7200, 7200.0)],
)
def test_windows(window: str | int, seconds: float) -> None:
    assert parse_window(window) == seconds


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "sets no target"),
        ({"success": 1.0}, "between 0 and 1"),
        ({"success": 99.9}, "between 0 and 1"),
        ({"wait_p99": 7.0}, "one of 0.1, 0.5, 1, 5"),
        ({"success": 0.99, "window": "a month"}, "not a duration"),
        ({"success": 0.99, "window": "10m"}, "at least 1h"),
    ],
)
def test_bad_objectives_fail_at_declaration(settings: dict[str, object], message: str) -> None:
    app = Conveyor("sqlite:///x.db")
    with pytest.raises(ConfigurationError, match=message):
        app.slo("emails", **settings)  # type: ignore[arg-type]


def test_objectives_take_a_task_or_its_name_and_names_are_unique() -> None:
    app = Conveyor("sqlite:///x.db")

    @app.task()
    def send_email(to: str) -> None: ...

    objective = app.slo("emails", task=send_email, success=0.999, wait_p99=5.0)
    assert objective.task == "send_email" and objective.window == 30 * 86400
    assert [sli for sli, _ in objective.targets()] == ["success", "wait"]
    assert app.slo("by-name", task="send_email", success=0.99).task == "send_email"
    with pytest.raises(ConfigurationError, match="already declared"):
        app.slo("emails", success=0.9)
    with pytest.raises(ConfigurationError, match="at least one sink"):
        app.alert_to()
    with pytest.raises(ConfigurationError, match="not an alert sink"):
        app.alert_to("https://example.com")  # type: ignore[arg-type]


def test_prometheus_rules_are_valid_yaml_with_recording_and_alerting_rules() -> None:
    app = Conveyor("sqlite:///x.db")
    app.slo("emails", task="send_email", success=0.999, wait_p99=5.0)
    app.slo("reports", queue="reports", success=0.99, window="7d")
    document = yaml.safe_load(prometheus_rules(list(app.objectives.values())))
    groups = {g["name"]: g["rules"] for g in document["groups"]}
    assert set(groups) == {"conveyor-slo-emails", "conveyor-slo-reports"}
    emails = groups["conveyor-slo-emails"]
    records = [r for r in emails if "record" in r]
    alerts = [r for r in emails if "alert" in r]
    assert len(records) == 2 * 5 and len(alerts) == 2 * 3  # 2 SLIs x 5 windows / 3 rules
    success_5m = next(r for r in records if r["record"] == "conveyor:slo_error_ratio:rate5m"
                      and r["labels"]["sli"] == "success")
    assert 'conveyor_jobs_dead_total{task="send_email"}[5m]' in success_5m["expr"]
    wait_1h = next(r for r in records if r["record"] == "conveyor:slo_error_ratio:rate1h"
                   and r["labels"]["sli"] == "wait")
    assert 'conveyor_job_wait_seconds_bucket{task="send_email",le="5.0"}[1h]' in wait_1h["expr"]
    page = next(r for r in alerts if r["labels"]["windows"] == "1h/5m"
                and r["labels"]["sli"] == "success")
    assert page["labels"]["severity"] == "page"
    assert "rate1h" in page["expr"] and "rate5m" in page["expr"]
    assert "(14.4 * 0.001)" in page["expr"]
    reports_page = next(r for r in groups["conveyor-slo-reports"] if "alert" in r)
    assert "(3.36 * 0.01)" in reports_page["expr"] and 'queue="reports"' in str(
        groups["conveyor-slo-reports"][0]["expr"]
    )
