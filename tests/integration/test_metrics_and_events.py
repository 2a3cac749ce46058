"""Job events, Prometheus metrics (scraped over HTTP and parsed with the Prometheus
text parser) and structured job logs, on a real worker and a real backend."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor, Retry
from conveyor.cli.logs import JsonFormatter
from conveyor.events import EventName, JobEvent
from conveyor.observability.logs import log_job_events
from conveyor.observability.prometheus import JobMetrics, serve_metrics
from conveyor.testing import drain

FAST = Retry(base=0.01, factor=2, cap=0.05)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def build(app: Conveyor) -> tuple[Any, Any, Any]:
    calls: list[int] = []

    @app.task(max_attempts=3, retry=FAST)
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("first try fails")
        return "ok"

    @app.task(max_attempts=1, queue="mail")
    def poison() -> None:
        raise ValueError("never works")

    @app.task()
    def fine(n: int) -> int:
        return n

    return flaky, poison, fine


def test_events_name_every_step_of_a_job_in_order(app: Conveyor) -> None:
    flaky, poison, fine = build(app)
    seen: list[JobEvent] = []
    app.events.subscribe(seen.append)
    a, b = flaky.enqueue(), poison.enqueue()
    fine.using(idempotency_key="once").enqueue(1)
    fine.using(idempotency_key="once").enqueue(1)  # a repeat: stored once, announced once
    drain(app, timeout=30)

    def names(job_id: int) -> list[str]:
        return [str(e.name) for e in seen if e.job_id == job_id]

    assert names(a.id) == ["enqueued", "started", "failed", "retried", "started", "succeeded"]
    assert names(b.id) == ["enqueued", "started", "failed", "dead"]
    assert [e.name for e in seen].count(EventName.ENQUEUED) == 3
    failed = next(e for e in seen if e.job_id == b.id and e.name is EventName.FAILED)
    assert failed.error_type == "builtins.ValueError" and failed.queue == "mail"
    assert failed.attempt == 1 and failed.worker and failed.duration is not None
    started = next(e for e in seen if e.name is EventName.STARTED)
    assert started.wait is not None and started.wait >= 0


def test_an_observer_that_raises_never_fails_a_job(app: Conveyor) -> None:
    _, _, fine = build(app)

    def broken(event: JobEvent) -> None:
        raise RuntimeError("observer bug")

    app.events.subscribe(broken)
    job = fine.enqueue(7)
    drain(app, timeout=30)
    assert job.wait(5) == 7


def test_metrics_endpoint_is_scraped_and_parsed(app: Conveyor) -> None:
    flaky, poison, fine = build(app)
    metrics = JobMetrics(app)
    server = serve_metrics(metrics, port=0)
    try:
        assert server.host == "127.0.0.1"  # loopback unless told otherwise
        flaky.enqueue()
        poison.enqueue()
        for n in range(3):
            fine.enqueue(n)
        drain(app, timeout=30, queues=["default", "mail"])
        fine.using(delay=3600).enqueue(99)  # waits: a scheduled job in the gauges
        s = scrape(server.url)
    finally:
        server.close()
        metrics.close()

    def value(name: str, **labels: str) -> float:
        return s[(name, tuple(sorted(labels.items())))]

    assert value("conveyor_jobs_enqueued_total", queue="default", task="fine") == 4
    assert value("conveyor_jobs_succeeded_total", queue="default", task="fine") == 3
    assert value("conveyor_jobs_failed_total", queue="default", task="flaky") == 1
    assert value("conveyor_jobs_retried_total", queue="default", task="flaky") == 1
    assert value("conveyor_jobs_succeeded_total", queue="default", task="flaky") == 1
    assert value("conveyor_jobs_started_total", queue="default", task="flaky") == 2
    assert value("conveyor_jobs_dead_total", queue="mail", task="poison") == 1
    assert value("conveyor_job_run_seconds_count", queue="default", task="fine") == 3
    assert value("conveyor_job_wait_seconds_count", queue="mail", task="poison") == 1
    assert value("conveyor_job_wait_seconds_bucket", queue="mail", task="poison",
                 le="+Inf") == 1
    assert value("conveyor_backend_up") == 1
    assert value("conveyor_queue_jobs", queue="default", state="succeeded") == 4  # 3 + flaky
    assert value("conveyor_queue_jobs", queue="default", state="scheduled") == 1
    assert value("conveyor_queue_jobs", queue="mail", state="dead") == 1
    assert value("conveyor_queue_oldest_waiting_seconds", queue="default") == 0
    # No label but queue, task (and state on the queue gauge), so no unbounded series.
    for (_, labels) in s:
        assert {k for k, _ in labels} <= {"queue", "task", "state", "le"}


def test_metrics_scrape_survives_a_backend_that_is_gone(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'missing-folder' / 'jobs.db'}")
    metrics = JobMetrics(app)
    server = serve_metrics(metrics, port=0)
    try:
        s = scrape(server.url)
    finally:
        server.close()
    assert s[("conveyor_backend_up", ())] == 0
    assert not any(name == "conveyor_queue_jobs" for name, _ in s)


def test_metrics_port_in_use_is_a_clear_error(app: Conveyor) -> None:
    from conveyor import ConveyorError

    metrics = JobMetrics(app)
    first = serve_metrics(metrics, port=0)
    try:
        with pytest.raises(ConveyorError, match="--metrics-port"):
            serve_metrics(JobMetrics(app), port=first.port)
    finally:
        first.close()


def test_job_logs_carry_the_job_fields_as_json(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    _, poison, fine = build(app)
    log_job_events(app)
    caplog.set_level(logging.DEBUG, logger="conveyor.jobs")
    ok, bad = fine.enqueue(1), poison.enqueue()
    drain(app, timeout=30, queues=["default", "mail"])
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records
             if r.name == "conveyor.jobs"]
    dead = next(line for line in lines if line.get("event") == "dead")
    assert dead["level"] == "error" and dead["job_id"] == bad.id
    assert dead["task"] == "poison" and dead["queue"] == "mail" and dead["attempt"] == 1
    assert dead["worker"] and "builtins.ValueError" in dead["message"]
    done = next(line for line in lines if line.get("event") == "succeeded")
    assert done["job_id"] == ok.id and done["level"] == "debug"


def test_filtered_observers_get_only_the_events_they_want(app: Conveyor) -> None:
    _, poison, fine = build(app)
    built: list[EventName] = []
    everything: list[JobEvent] = []
    failures: list[JobEvent] = []
    app.events.subscribe(everything.append)
    unsubscribe = app.events.subscribe(
        failures.append, wants=lambda name: built.append(name) or name is EventName.DEAD
    )
    poison.enqueue()
    fine.enqueue(1)
    drain(app)
    assert [e.name for e in failures] == [EventName.DEAD]
    assert EventName.SUCCEEDED in [e.name for e in everything]
    assert built  # the filter was asked
    unsubscribe()
    assert app.events.wants(EventName.DEAD)  # the unfiltered observer remains


def test_job_log_at_warning_builds_no_event_for_a_success(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    _, poison, fine = build(app)
    log_job_events(app)
    caplog.set_level(logging.WARNING, logger="conveyor.jobs")
    assert not app.events.wants(EventName.SUCCEEDED)
    assert not app.events.wants(EventName.STARTED)
    assert app.events.wants(EventName.FAILED) and app.events.wants(EventName.DEAD)
    fine.enqueue(1)
    poison.enqueue()
    drain(app)
    logged = [r for r in caplog.records if r.name == "conveyor.jobs"]
    assert [getattr(r, "event", None) for r in logged] == ["failed", "dead"]
    caplog.set_level(logging.DEBUG, logger="conveyor.jobs")  # a level change applies at once
    assert app.events.wants(EventName.SUCCEEDED)


def test_a_failing_event_filter_never_fails_a_job(app: Conveyor) -> None:
    _, _, fine = build(app)
    seen: list[JobEvent] = []

    def broken(name: EventName) -> bool:
        raise RuntimeError("filter bug")

    app.events.subscribe(seen.append, wants=broken)
    job = fine.enqueue(2)
    drain(app)
    assert job.wait(timeout=5) == 2
