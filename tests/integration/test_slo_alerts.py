"""SLO burn-rate alerts end to end: a real worker on a real SQLite file, time moved by
a ManualClock (never slept), notices sent to real sinks."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.clock import ManualClock
from conveyor.observability.alerts import (
    Alert,
    AlertEvaluator,
    LogSink,
    SlackSink,
    WebhookSink,
)
from conveyor.types import JobState

PER_MINUTE = 10
"""Jobs per simulated minute; a 20% burst fails 2 of them."""
UNFINISHED = (JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING)


@dataclass
class Recorder:
    """An alert sink that keeps what it was sent (sinks are ours; nothing is mocked)."""

    alerts: list[Alert] = field(default_factory=list)

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def of(self, severity: str) -> list[Alert]:
        return [a for a in self.alerts if a.severity == severity]


@dataclass
class Scenario:
    app: Conveyor
    clock: ManualClock
    evaluator: AlertEvaluator
    sink: Recorder
    minute: int = 0

    def run_minute(self, failing: int, minutes: int = 1) -> list[Alert]:
        """Enqueue `minutes` of traffic (`failing` of each minute's jobs fail), let the
        worker finish it, move the clock that far on, and evaluate the alerts once."""
        send = self.app.get_task("send_email")
        send.enqueue_many([(i >= failing,) for i in range(PER_MINUTE)] * minutes)
        deadline = time.monotonic() + 60
        while self.app.backend.job_list(JobFilter(states=UNFINISHED, limit=1)):
            assert time.monotonic() < deadline, "the worker did not finish a minute of jobs"
            time.sleep(0.002)
        self.clock.advance(60 * minutes)
        self.minute += minutes
        return self.evaluator.tick()

    def run_minutes(self, count: int, failing: int = 0) -> list[Alert]:
        sent: list[Alert] = []
        for _ in range(count):
            sent += self.run_minute(failing)
        return sent


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    clock = ManualClock(start=1_800_000_000.0)  # a whole minute
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock, poll_interval=0.01,
                   lease=30.0)

    @app.task(max_attempts=1)
    def send_email(ok: bool) -> None:
        if not ok:
            raise ConnectionError("smtp relay refused the connection")

    app.slo("emails", task=send_email, success=0.999, window="30d")
    sink = Recorder()
    evaluator = AlertEvaluator(
        app.backend, app.objectives, [sink, LogSink()], interval=60, holder="evaluator-a"
    )
    worker = app.worker(concurrency=4, install_signals=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield Scenario(app, clock, evaluator, sink)
    worker.stop(graceful=False)
    thread.join(timeout=30)
    app.close()


def test_a_20_percent_failure_burst_pages_when_the_sre_table_says_and_then_resolves(
    scenario: Scenario,
) -> None:
    s = scenario
    # Six hours of healthy history (the 6h/30m rule's long window), the older hours
    # in one-hour steps, the last one minute by minute: nothing to say.
    for _ in range(5):
        assert s.run_minute(failing=0, minutes=60) == []
    assert s.run_minutes(60) == []

    # A one-minute blip of 20% failures spends 0.2/60 = 0.33% of an hour's budget
    # ratio: far below the 14.4x page threshold (1.44% over 1h). It must not page.
    s.run_minutes(1, failing=2)
    s.run_minutes(60)
    assert s.sink.of("page") == []

    # A sustained 20% failure rate burns 200x. The 1h/5m rule needs the 1h error
    # ratio above 14.4 * 0.1% = 1.44%: after t minutes that ratio is 0.2 * t / 60,
    # so the SRE workbook predicts detection after 14.4 * 0.001 / 0.2 h = 4.32 min:
    # the first evaluation past it is the 5th minute.
    fired_at = None
    for t in range(1, 11):
        pages = [a for a in s.run_minute(failing=2) if a.severity == "page"]
        if pages:
            fired_at = t
            break
    assert fired_at == 5
    [page] = s.sink.of("page")
    assert page.status == "firing" and page.objective == "emails" and page.sli == "success"
    assert page.windows == "1h/5m"
    # Seven hours of traffic hold a small budget (0.1% of ~4,300 jobs): overspent.
    assert page.task == "send_email" and page.budget_left < 0
    assert page.top_errors[0][0] == "builtins.ConnectionError"
    assert page.burn_rates["5m"] > 14.4

    # Still burning: the incident is paged once, not every minute.
    s.run_minutes(3, failing=2)
    assert len(s.sink.of("page")) == 1

    # Recovery: the 1h ratio stays high for an hour, but the 5m confirmation window
    # resolves the page as soon as the burst has left it: after 5 healthy minutes.
    resolved_after = None
    for r in range(1, 40):
        if [a for a in s.run_minute(failing=0) if a.severity == "page"]:
            resolved_after = r
            break
    assert resolved_after == 5
    assert [a.status for a in s.sink.of("page")] == ["firing", "resolved"]
    assert s.sink.of("page")[-1].summary.startswith("RESOLVED page: emails")


def test_one_elected_evaluator_sends_and_a_new_leader_does_not_repeat(
    scenario: Scenario,
) -> None:
    s = scenario
    other_sink = Recorder()
    other = AlertEvaluator(
        s.app.backend, s.app.objectives, [other_sink], interval=60, holder="evaluator-b"
    )
    s.run_minutes(10)
    s.run_minutes(10, failing=2)  # evaluator-a leads and pages
    assert other.tick() == []  # evaluator-b is not elected: it evaluates nothing
    assert len(s.sink.of("page")) == 1 and other_sink.alerts == []

    # A deploy mid-incident: a stops (and resigns), b is elected at its next tick. The
    # page is already out, so b does not repeat it; b sends the resolved notice.
    s.evaluator.stop()
    s.evaluator, s.sink = other, other_sink
    assert s.run_minute(failing=2) == []
    assert other_sink.alerts == []
    for _ in range(40):
        if s.run_minute(failing=0):
            break
    assert [(a.severity, a.status) for a in other_sink.alerts] == [("page", "resolved")]


# -- sinks against a real HTTP server ------------------------------------------------------
@dataclass
class Hook:
    url: str
    bodies: list[Any]
    statuses: list[int]
    """Status codes to answer with, in order (then 200)."""


@pytest.fixture
def hook() -> Iterator[Hook]:
    bodies: list[Any] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            code = statuses.pop(0) if statuses else 200
            if code == 200:
                bodies.append({"path": self.path, "type": self.headers["Content-Type"],
                               "body": body})
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Hook(f"http://127.0.0.1:{server.server_address[1]}", bodies, statuses)
    server.shutdown()
    server.server_close()


def test_webhook_and_slack_sinks_post_the_notice(scenario: Scenario, hook: Hook) -> None:
    s = scenario
    s.evaluator.sinks = [WebhookSink(hook.url + "/generic"), SlackSink(hook.url + "/slack")]
    s.run_minutes(10)
    s.run_minutes(8, failing=2)
    generic = [b["body"] for b in hook.bodies if b["path"] == "/generic"]
    slack = [b["body"] for b in hook.bodies if b["path"] == "/slack"]
    page = next(b for b in generic if b["severity"] == "page")
    assert page["status"] == "firing" and page["objective"] == "emails"
    assert page["top_errors"][0]["type"] == "builtins.ConnectionError"
    assert page["budget_left"] < 1 and page["burn_rates"]["1h"] > 14.4
    assert all(b["type"] == "application/json" for b in hook.bodies)
    assert any(b["text"].startswith(":rotating_light: conveyor PAGE: emails") for b in slack)


def test_a_failing_sink_gets_the_notice_again_at_the_next_evaluation(
    scenario: Scenario, hook: Hook
) -> None:
    s = scenario
    s.evaluator.sinks = [WebhookSink(hook.url)]
    s.run_minutes(10)
    hook.statuses.extend([500] * 100)  # the receiver is down for a while
    s.run_minutes(8, failing=2)
    assert hook.bodies == []
    assert not any(a.firing for a in s.app.backend.alert_list())
    hook.statuses.clear()  # back up: the page goes out at the next evaluation
    s.run_minute(failing=2)
    assert [b["body"]["severity"] for b in hook.bodies].count("page") == 1
    assert any(a.firing for a in s.app.backend.alert_list())


def test_webhook_urls_must_be_http() -> None:
    from conveyor import ConfigurationError

    with pytest.raises(ConfigurationError, match="http"):
        WebhookSink("file:///etc/passwd")


def test_a_worker_with_alert_sinks_leads_the_evaluation_while_it_runs(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}", poll_interval=0.01)
    app.slo("all", success=0.99)
    sink = Recorder()
    app.alert_to(sink, interval=60)
    app.migrate()
    worker = app.worker(install_signals=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()

    def holder() -> str | None:
        with closing(sqlite3.connect(tmp_path / "jobs.db")) as conn:
            row = conn.execute(
                "SELECT holder FROM conveyor_leaders WHERE name = 'slo-alerts'"
            ).fetchone()
        return None if row is None else str(row[0])

    try:
        deadline = time.monotonic() + 60
        while holder() != worker.id:
            assert time.monotonic() < deadline, "the worker never took the alert role"
            time.sleep(0.01)
        assert not app.backend.leader_elect("slo-alerts", "someone-else", ttl=60)
    finally:
        worker.stop()
        thread.join(timeout=30)
    # Stopped: it resigned, so another process takes over at once.
    assert holder() is None
    assert app.backend.leader_elect("slo-alerts", "someone-else", ttl=60)
    assert sink.alerts == []  # no traffic, nothing burns
    app.close()
