"""Observability: metrics, structured logs, SLOs and burn-rate alerts.

All of it observes the job events of `conveyor.events` or reads the backend
through `conveyor.insights`; none of it runs inside the worker loop.

- `prometheus`: `JobMetrics` and `serve_metrics` (`conveyor worker --metrics-port`)
- `logs`: `log_job_events` (structured job logs; `--log-json` for JSON lines)
- `slo`: objectives, SLIs, error budgets and burn rates (`app.slo(...)`, `conveyor slo`)
- `alerts`: the leader-elected evaluator and its sinks (`app.alert_to(...)`)
- `rules`: the equivalent Prometheus recording and alerting rules (`conveyor slo rules`)

See docs/observability.md.
"""
