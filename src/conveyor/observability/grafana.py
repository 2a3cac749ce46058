"""A Grafana dashboard (JSON) over the metrics conveyor's workers export.

    conveyor grafana-dashboard > conveyor.json                  # generic board
    conveyor grafana-dashboard myapp.tasks:app > conveyor.json  # plus the app's SLOs

Every query reads only the series served at a worker's `--metrics-port`
(`conveyor.observability.prometheus`), never recording rules, so the board
works against a bare Prometheus scrape. Import it in Grafana and pick the
Prometheus data source. Rows: queues, throughput, wait and run-time
percentiles, errors, SLO error budgets and burn rates, workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.observability.rules import error_ratio_expr
from conveyor.observability.slo import BURN_RULES, Objective, format_window

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_QUEUE = 'queue=~"$queue"'


class _Board:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def panel(self, title: str, targets: Sequence[tuple[str, str]], *, unit: str = "short",
              kind: str = "timeseries", description: str = "", width: int = 8) -> None:
        if self.x + width > 24:
            self.y += 8
            self.x = 0
        self.panels.append({
            "type": kind,
            "title": title,
            "description": description,
            "id": self._id(),
            "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": width, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                 "legendFormat": legend}
                for i, (expr, legend) in enumerate(targets)
            ],
        })
        self.x += width


def _quantiles(metric: str) -> list[tuple[str, str]]:
    return [
        (f"histogram_quantile({q}, sum by (le, queue) (rate({metric}_bucket{{{_QUEUE}}}[5m])))",
         f"p{round(q * 100)} {{{{queue}}}}")
        for q in (0.5, 0.95, 0.99)
    ]


def dashboard(objectives: Sequence[Objective] = (), *, title: str = "conveyor") -> dict[str, Any]:
    """The dashboard as a JSON-ready dict; one SLO row per objective given."""
    board = _Board()
    board.row("Queues")
    board.panel("Jobs by state", [
        (f"max by (queue, state) (conveyor_queue_jobs{{{_QUEUE}}})", "{{queue}} {{state}}"),
    ], description="Read from the database at scrape time: max, not sum, across workers.")
    board.panel("Oldest waiting job", [
        (f"max by (queue) (conveyor_queue_oldest_waiting_seconds{{{_QUEUE}}})", "{{queue}}"),
    ], unit="s", description="How long the longest-waiting due job has waited.")
    board.panel("Backend up", [("min(conveyor_backend_up)", "backend")], kind="stat")

    board.row("Throughput")
    board.panel("Enqueued / s", [
        (f"sum by (queue) (rate(conveyor_jobs_enqueued_total{{{_QUEUE}}}[5m]))", "{{queue}}"),
    ], unit="ops")
    board.panel("Started / s", [
        (f"sum by (queue) (rate(conveyor_jobs_started_total{{{_QUEUE}}}[5m]))", "{{queue}}"),
    ], unit="ops")
    board.panel("Succeeded / s", [
        (f"sum by (queue) (rate(conveyor_jobs_succeeded_total{{{_QUEUE}}}[5m]))", "{{queue}}"),
    ], unit="ops")

    board.row("Latency")
    board.panel("Wait (start minus run_at) percentiles", _quantiles("conveyor_job_wait_seconds"),
                unit="s", width=12)
    board.panel("Run time percentiles", _quantiles("conveyor_job_run_seconds"), unit="s",
                width=12)

    board.row("Errors")
    board.panel("Failed attempts / s", [
        (f"sum by (queue, task) (rate(conveyor_jobs_failed_total{{{_QUEUE}}}[5m]))",
         "{{queue}} {{task}}"),
    ], unit="ops")
    board.panel("Retried and dead / s", [
        (f"sum by (queue) (rate(conveyor_jobs_retried_total{{{_QUEUE}}}[5m]))",
         "retried {{queue}}"),
        (f"sum by (queue) (rate(conveyor_jobs_dead_total{{{_QUEUE}}}[5m]))", "dead {{queue}}"),
    ], unit="ops")
    board.panel("Lost completions / s", [
        (f"sum by (queue) (rate(conveyor_jobs_lost_total{{{_QUEUE}}}[5m]))", "{{queue}}"),
    ], unit="ops", description="Completions refused because the lease moved on (fenced).")

    board.row("SLOs: error budget and burn rate")
    if not objectives:
        board.panel("Dead ratio (success SLI of all jobs), 1h", [
            ("sum(rate(conveyor_jobs_dead_total[1h])) / (sum(rate(conveyor_jobs_succeeded_total"
             "[1h])) + sum(rate(conveyor_jobs_dead_total[1h])))", "error ratio"),
        ], unit="percentunit", width=24,
            description="Declare SLOs with app.slo(...) and generate the board with the app "
                        "to get one row per objective.")
    for objective in objectives:
        for sli, target in objective.targets():
            budget = 1.0 - target
            window = format_window(objective.window)
            board.panel(f"{objective.name} ({sli}): budget left over {window}", [
                (f"1 - ({error_ratio_expr(objective, sli, window)}) / {budget!r}",
                 "budget left"),
            ], unit="percentunit", kind="stat")
            burn = []
            for rule in BURN_RULES:
                for seconds in (rule.long_window, rule.short_window):
                    w = format_window(seconds)
                    burn.append((f"({error_ratio_expr(objective, sli, w)}) / {budget!r}",
                                 f"burn {w}"))
            unique = list(dict.fromkeys(burn))
            board.panel(f"{objective.name} ({sli}): burn rate", unique, width=16,
                        description="1 spends the budget exactly over the window; the "
                                    "alerts fire above 14.4 (1h), 6 (6h) and 1 (3d).")

    board.row("Workers")
    board.panel("Workers alive by queue", [
        (f"max by (queue) (conveyor_workers_alive{{{_QUEUE}}})", "{{queue}}"),
    ])
    board.panel("Slots in use", [
        ("sum(conveyor_worker_running_jobs)", "running"),
        ("sum(conveyor_worker_concurrency)", "slots"),
    ])
    board.panel("Worker processes up", [("sum(conveyor_worker_up)", "up")], kind="stat")

    return {
        "title": title,
        "uid": "conveyor",
        "tags": ["conveyor"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Prometheus"},
            {"name": "queue", "type": "query", "datasource": DATASOURCE,
             "query": "label_values(conveyor_queue_jobs, queue)", "includeAll": True,
             "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
             "refresh": 2},
        ]},
        "panels": board.panels,
    }


__all__ = ["dashboard"]
