"""An outage end to end: a dependency fails for a few (simulated) minutes, a page fires,
an incident opens, the dependency recovers, the page resolves and closes the incident,
and `conveyor incident draft` (a real process) tells the story.

A real worker on a real SQLite file runs every job; time is moved by a ManualClock
(never slept), so minutes of traffic take milliseconds. The alert notices go to a
real HTTP webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import EventFilter, JobFilter
from conveyor.clock import ManualClock
from conveyor.incidents.draft import iso
from conveyor.observability.alerts import Alert, WebhookSink
from conveyor.types import JobState

PER_MINUTE = 10
START = 1_800_000_000.0
APP_MODULE = '''
import pytest

from conveyor import Conveyor

OUTAGE = {"on": False}


def build(url, clock=None):
    app = Conveyor(url, clock=clock, poll_interval=0.01, lease=30.0,
                   dashboard_url="https://ops.example.com/conveyor")

    @app.task(max_attempts=1)
    def charge(order: int) -> None:
        if OUTAGE["on"]:
            raise ConnectionError("payments gateway unreachable")

    app.slo("payments", task=charge, success=0.999, window="30d")
    return app


app = build("sqlite:///{db}")
'''


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012 - one server per test

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_an_outage_pages_opens_an_incident_resolves_it_and_the_draft_tells_the_story(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    (tmp_path / "shop.py").write_text(APP_MODULE.replace("{db}", str(db)))
    sys.path.insert(0, str(tmp_path))
    try:
        import shop  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shop", None)  # a later test may write its own shop.py
    clock = ManualClock(start=START)
    app: Conveyor = shop.build(f"sqlite:///{db}", clock=clock)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hook.received = []
    app.alert_to(WebhookSink(f"http://127.0.0.1:{server.server_port}/hook"))
    evaluator = app.alert_evaluator("e2e")
    worker = app.worker(concurrency=4, install_signals=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    charge = app.get_task("charge")
    pages: list[Alert] = []

    def minute(offset: float = 0.0) -> None:
        """A minute of traffic (finished by the worker), then the clock to the next minute
        and one evaluation."""
        charge.enqueue_many([(i,) for i in range(PER_MINUTE)])
        deadline = time.monotonic() + 60
        unfinished = (JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING)
        while app.backend.job_list(JobFilter(states=unfinished, limit=1)):
            assert time.monotonic() < deadline, "the worker did not finish a minute of jobs"
            time.sleep(0.002)
        clock.advance(60 - offset)
        pages.extend(a for a in evaluator.tick() if a.severity == "page")

    try:
        for _ in range(10):
            minute()
        # The deploy, then the dependency fails five seconds later, for five minutes.
        app.annotate("deployed v1.4.2", by="ci-pipeline", kind="annotation.deploy")
        clock.advance(5)
        outage_start = clock.now()
        shop.OUTAGE["on"] = True
        minute(offset=5)
        for _ in range(4):
            minute()
        shop.OUTAGE["on"] = False
        recovery = clock.now()
        while not any(p.status == "resolved" for p in pages):
            assert clock.now() - recovery < 3600, "the page never resolved"
            minute()
    finally:
        worker.stop(graceful=False)
        thread.join(timeout=30)
        server.shutdown()

    fired = [p for p in pages if p.status == "firing"]
    resolved = [p for p in pages if p.status == "resolved"]
    assert len(fired) == 1 and len(resolved) == 1
    assert fired[0].incident == resolved[0].incident == 1
    url = "https://ops.example.com/conveyor/incidents/1"
    # Both the webhook's page and its "resolved" link to the incident's page.
    assert [(h["status"], h["incident_url"]) for h in Hook.received
            if h["severity"] == "page"] == [("firing", url), ("resolved", url)]
    incident = app.backend.incident_get(1)
    assert incident is not None and incident.closed_at == resolved[0].at
    assert incident.opened_at == fired[0].at
    # The event log kept the story: the alert (with burn rates), the incident, the workers.
    app.event_log.flush()
    kinds = [e.kind for e in reversed(app.backend.event_list(EventFilter(limit=1000)))]
    for kind in ("worker.started", "annotation.deploy", "alert.fired", "incident.opened",
                 "alert.resolved", "incident.closed"):
        assert kind in kinds
    [fired_event] = [e for e in app.backend.event_list(EventFilter(kind="alert.fired"))
                     if e.subject == fired[0].key]
    assert fired_event.details["burn_rates"]["5m"] > 14.4
    app.close()

    # The postmortem draft, written by the CLI in a process of its own.
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "incident", "draft", "1", "-A", "shop:app",
         "--out", str(tmp_path / "drafts")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True,
        text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "drafts" / "incident-1.json").read_text())
    markdown = (tmp_path / "drafts" / "incident-1.md").read_text()
    summary = data["summary"]
    assert abs(summary["started_at"] - outage_start) < 60
    assert summary["paged_at"] == fired[0].at
    assert recovery - 60 <= summary["recovered_at"] <= recovery  # the last minute of errors
    assert summary["top_error"] == {"type": "builtins.ConnectionError", "count": 50}
    budget = data["impact"]["budget"]
    total = PER_MINUTE * (10 + 5 + (resolved[0].at - recovery) / 60)
    assert budget["bad"] == 50 and budget["spent"] == pytest.approx(50 / (0.001 * total))
    assert data["impact"]["dead"] == 50 and data["impact"]["tasks"] == ["charge"]
    assert [c["text"] for c in data["changes_before"]] == ["deployed v1.4.2"]
    for line in (
        f"- Outage started: {iso(summary['started_at'])}",
        f"- Paged: {iso(fired[0].at)}",
        f"- Recovered (last error): {iso(summary['recovered_at'])}",
        "- Top error: `builtins.ConnectionError` x50",
        f"- Error budget spent: {budget['spent']:.1%} of payments's budget",
        "annotation.deploy",
        "deployed v1.4.2",
        "## Timeline (UTC)",
        "## Follow-ups",
    ):
        assert line in markdown, line
