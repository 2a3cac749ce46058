"""The app's SLOs as Prometheus recording and alerting rules (`conveyor slo rules`).

For teams that already run Prometheus and Alertmanager: the same objectives and
the same multiwindow, multi-burn-rate rules as the built-in evaluator, computed
from the metrics every worker exports. One recording rule per objective, SLI
and window (`conveyor:slo_error_ratio:rate5m` …, labelled `objective` and
`sli`), then one alert per objective, SLI and rule. Load the output as a rule
file (or paste it into a PrometheusRule's `spec`).

Two differences from the built-in evaluator, both inherent to counters: a
worker restart resets its counters (`rate()` copes), and the wait SLI counts
attempts when they start (the histogram) rather than when they finish.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from conveyor.observability.slo import BURN_RULES, BURN_WINDOWS, Objective, format_window


def _selector(objective: Objective, extra: str = "") -> str:
    matchers = []
    if objective.task is not None:
        matchers.append(f"task={json.dumps(objective.task)}")
    if objective.queue is not None:
        matchers.append(f"queue={json.dumps(objective.queue)}")
    if extra:
        matchers.append(extra)
    return "{" + ",".join(matchers) + "}"


def error_ratio_expr(objective: Objective, sli: str, window: str) -> str:
    """PromQL for the SLI's error ratio over `window` (e.g. "5m")."""
    if sli == "success":
        bad = f"sum(rate(conveyor_jobs_dead_total{_selector(objective)}[{window}]))"
        good = f"sum(rate(conveyor_jobs_succeeded_total{_selector(objective)}[{window}]))"
        return f"{bad} / ({good} + {bad})"
    assert objective.wait_p99 is not None
    le = f'le="{float(objective.wait_p99)!r}"'  # as prometheus_client writes it: 5.0
    within = f"sum(rate(conveyor_job_wait_seconds_bucket{_selector(objective, le)}[{window}]))"
    every = f"sum(rate(conveyor_job_wait_seconds_count{_selector(objective)}[{window}]))"
    return f"1 - ({within} / {every})"


def _q(value: str) -> str:
    """A YAML scalar: JSON strings are valid YAML double-quoted strings."""
    return json.dumps(value)


def prometheus_rules(objectives: Sequence[Objective]) -> str:
    """A Prometheus rule file (YAML) for `objectives`."""
    lines = ["groups:"]
    for objective in objectives:
        lines += [f"  - name: {_q('conveyor-slo-' + objective.name)}", "    rules:"]
        for sli, target in objective.targets():
            budget = 1.0 - target
            labels = f"objective: {_q(objective.name)}, sli: {_q(sli)}"
            for seconds in BURN_WINDOWS:
                window = format_window(seconds)
                lines += [
                    f"      - record: conveyor:slo_error_ratio:rate{window}",
                    f"        expr: {_q(error_ratio_expr(objective, sli, window))}",
                    f"        labels: {{{labels}}}",
                ]
            for rule in BURN_RULES:
                threshold = rule.threshold(objective.window)
                limit = f"({threshold:g} * {budget:g})"
                match = f'{{objective={_q(objective.name)},sli={_q(sli)}}}'
                long_w = format_window(rule.long_window)
                short_w = format_window(rule.short_window)
                expr = (f"conveyor:slo_error_ratio:rate{long_w}{match} > {limit} and "
                        f"conveyor:slo_error_ratio:rate{short_w}{match} > {limit}")
                summary = (f"{objective.name} ({sli}) is burning its error budget "
                           f"{threshold:g}x or faster over {long_w} and {short_w}")
                lines += [
                    "      - alert: ConveyorSLOBurnRate",
                    f"        expr: {_q(expr)}",
                    f"        labels: {{{labels}, severity: {_q(rule.severity)}, "
                    f"windows: {_q(rule.name)}}}",
                    f"        annotations: {{summary: {_q(summary)}}}",
                ]
    return "\n".join(lines) + "\n"


__all__ = ["error_ratio_expr", "prometheus_rules"]
