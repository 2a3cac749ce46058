"""The operator console over HTTP, on every backend: operator retries in a job's attempt
history, the charts from the durable aggregates, the job list's selects and columns,
zeros not coloured, the favicon and script policy, and the spool view per host.
(The live update itself is observed in Chromium: tests/web/test_console_browser.py.)"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from conveyor import Conveyor, JobState
from conveyor.backends import open_backend
from conveyor.backends.base import (
    RUN_BUCKETS,
    Completion,
    FetchParams,
    JobFilter,
    JobInsert,
    SpoolReport,
    StatsQuery,
)
from conveyor.spool import Forwarder, Spool
from conveyor.testing import drain
from conveyor.web import create_app
from conveyor.web.console import histogram_quantile, short_seconds
from tests.web.conftest import Web, register_tasks
from tests.web.test_dashboard import csrf_of, sign_in


def test_an_operator_retry_is_recorded_and_shown_between_the_attempts(web: Web) -> None:
    job = web.app.get_task("flaky").enqueue("x")
    drain(web.app, timeout=15)
    record = web.app.backend.job_get(job.id)
    assert record is not None and record.state is JobState.DEAD and len(record.errors) == 2
    client = sign_in(web, "operator")
    token = csrf_of(client.get(f"/jobs/{job.id}").text)
    r = client.post(f"/jobs/{job.id}/retry", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    # The same press again (the job is no longer dead): refused, and no second mark.
    r = client.post(f"/jobs/{job.id}/retry", data={"csrf": token})
    assert r.status_code == 409
    drain(web.app, timeout=15)
    record = web.app.backend.job_get(job.id)
    assert record is not None and record.state is JobState.DEAD
    assert [e.attempt for e in record.errors] == [1, 2, 1, 2]
    marks = web.app.backend.job_retries(job.id)
    assert len(marks) == 1 and marks[0].after_errors == 2
    assert marks[0].actor.startswith("token:test-operator")
    html = client.get(f"/jobs/{job.id}").text
    # Newest first: run 2's attempts, then the operator's retry, then run 1's.
    order = re.findall(r'data-(attempt|retry)="([^"]+)"', html)
    assert order == [("attempt", "2-2"), ("attempt", "2-1"), ("retry", "2"),
                     ("attempt", "1-2"), ("attempt", "1-1")]
    assert "retried by an operator" in html and "token:test-operator" in html
    # A retry through the operations layer by filter (the dead-letter page's) marks too.
    web.app.operations.retry(JobFilter(states=[JobState.DEAD], ids=[job.id], limit=1),
                             actor="cli:alice", source="cli")
    assert [m.actor for m in web.app.backend.job_retries(job.id)][-1] == "cli:alice"
    assert web.app.backend.job_retries(10**12) == []


def test_the_job_list_offers_selects_and_shows_duration_and_finished(web: Web) -> None:
    web.app.get_task("add").enqueue(1, 2)
    web.app.get_task("send_mail").enqueue("a@b", "hi")
    drain(web.app, timeout=15)
    waiting = web.app.get_task("add").enqueue(5)
    client = sign_in(web, "viewer")
    html = client.get("/jobs").text
    queue_select = re.search(r'<select name="queue".*?</select>', html, re.S)
    task_select = re.search(r'<select name="task".*?</select>', html, re.S)
    assert queue_select and task_select
    assert re.findall(r'option value="([^"]*)"', queue_select.group(0)) == ["", "default", "mail"]
    assert {"add", "send_mail", "poison", "flaky"} <= set(
        re.findall(r'option value="([^"]+)"', task_select.group(0)))
    assert "<th>finished (UTC)</th>" in html and ">duration</th>" in html
    rows = dict(re.findall(r'<tr data-job="(\d+)">(.*?)</tr>', html, re.S))
    assert re.search(r"data-duration>\d+(ms|\.\ds)<", rows[str(waiting.id - 1)])
    assert "data-duration>-<" in rows[str(waiting.id)]  # not started: no duration
    filtered = client.get("/jobs?queue=mail").text
    assert 'option value="mail" selected' in filtered
    assert re.findall(r'<tr data-job="(\d+)">', filtered) == [str(waiting.id - 1)]
    # A queue nobody knows is still offered (selected) when the filter names it.
    assert 'option value="nosuch" selected' in client.get("/jobs?queue=nosuch").text
    assert "too long" in client.get("/jobs?task=" + "t" * 300).text


def test_charts_come_from_the_aggregates_per_queue_and_task_over_a_window(web: Web) -> None:
    client = sign_in(web, "viewer")
    empty = client.get("/charts").text
    assert "Nothing finished in this window." in empty
    web.app.get_task("add").enqueue(1)
    overview = client.get("/").text  # a queue with a job, nothing finished yet
    for _ in range(2):
        web.app.get_task("add").enqueue(1)
    web.app.get_task("flaky").enqueue("y")
    web.app.get_task("send_mail").enqueue("a@b", "hi")
    drain(web.app, timeout=15)
    html = client.get("/charts?window=15m").text
    assert re.search(r'id="chart-total">6<', html), html  # 3 + 2 attempts of flaky + 1
    keys = dict(re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', html, re.S))
    assert set(keys) == {"default/add", "default/flaky", "mail/send_mail"}
    flaky = re.findall(r'<td class="num[^"]*">([^<]*)</td>', keys["default/flaky"])
    assert flaky[:2] == ["2", "0.1"] and flaky[2:6] == ["0", "1", "1", "100.0%"]
    assert "<svg" in html and ("<polyline" in html or "<circle" in html)
    assert "builtins.ValueError" in html  # the top error
    only_add = client.get("/charts?window=24h&task=add").text
    assert re.search(r'id="chart-total">3<', only_add)
    assert 'option value="add" selected' in only_add
    assert 'option value="24h" selected' in only_add
    only_mail = client.get("/charts?queue=mail&window=7d").text
    assert set(re.findall(r'<tr data-key="([^"]+)">', only_mail)) == {"mail/send_mail"}
    # A long window is polled less often than a short one (unless ?live= says otherwise).
    assert 'data-live-every="240.0"' in only_add
    assert 'data-live-every="2.5"' in client.get("/charts?window=15m").text
    assert 'data-live-every="5.0"' in client.get("/charts?window=7d&live=5").text
    bad = client.get("/charts?window=2y")
    assert bad.status_code == 200 and "window must be one of 15m, 1h, 6h, 24h, 7d" in bad.text
    assert 'option value="1h" selected' in bad.text
    assert "too long" in client.get("/charts?queue=" + "q" * 300).text
    assert "window must be one of" in client.get("/charts?window=" + "9" * 10_000).text
    # The overview's last-hour chart: a sentence when idle, bars from the aggregates after.
    assert "nothing finished in the last hour" in overview
    overview = client.get("/").text
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', overview, re.S)
    assert row and "5 in the hour" in row.group(1) and 'class="retry"' in row.group(1)


def test_zero_counts_are_not_coloured(web: Web) -> None:
    web.app.get_task("add").enqueue(1)
    client = sign_in(web, "viewer")
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', client.get("/").text, re.S)
    assert row
    by_state = {state: css for css, state in
                re.findall(r'<td class="([^"]+)" data-count="(\w+)"', row.group(1))}
    assert by_state["dead"] == "num zero" and by_state["succeeded"] == "num zero"
    assert by_state["available"] == "num state-available"


def test_favicon_script_and_policy(web: Web) -> None:
    r = web.client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg")
    script = web.client.get("/static/live.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "data-live" in script.text and "http" not in script.text.replace(
        "HTTP ", "")  # nothing fetched from elsewhere
    policy = web.client.get("/login").headers["content-security-policy"]
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy
    assert "unsafe" not in policy
    page = sign_in(web, "viewer").get("/")
    assert 'rel="icon"' in page.text and 'data-live-every="2.0"' in page.text
    assert "data-live-every" not in web.client.get("/?live=0").text
    assert 'data-live-every="0.5"' in web.client.get("/?live=0.01").text
    assert 'data-live-every="2.0"' in web.client.get("/?live=abc").text
    assert "data-live-every" not in web.client.get("/login").text  # nothing changes there
    assert 'id="live-workers" data-live' in web.client.get("/workers").text


def test_spooled_jobs_show_per_host_once_they_arrive(
    make_app: Callable[..., Conveyor], tmp_path: Path
) -> None:
    app = make_app(when_unreachable="spool", spool_path=str(tmp_path / "spool"))
    register_tasks(app)
    client = TestClient(create_app(app, auth=False), base_url="http://127.0.0.1")
    assert 'id="spools"' not in client.get("/").text  # no host ever spooled

    def spooled(n: int) -> None:
        app.spool.add([JobInsert("add", "default", "[[1], {}]", 5, 3,
                                 client_id=str(uuid.uuid4())) for _ in range(n)])

    spooled(3)
    assert app.flush_spool() == 3
    spooled(2)
    assert app.flush_spool() == 2
    host = socket.gethostname()
    [row] = app.backend.spool_hosts()
    assert (row.host, row.forwarded, row.depth) == (host, 5, 0)
    assert row.path == app.spool_path
    html = client.get("/").text
    cells = re.search(rf'<tr data-spool-host="{re.escape(host)}">(.*?)</tr>', html, re.S)
    assert cells and re.findall(r'<td class="num[^"]*">([^<]*)</td>', cells.group(1))[:2] == [
        "5", "0"]
    assert len(app.backend.job_list(JobFilter(task="add"))) == 5
    # Another host whose spool still holds jobs, as its forwarder reported.
    app.backend.spool_report(SpoolReport("app-7", "/var/spool/x", 10, 4, app.backend.now() - 90))
    html = client.get("/").text
    other = re.search(r'<tr data-spool-host="app-7">(.*?)</tr>', html, re.S)
    assert other and 'class="num warn-cell">4<' in other.group(1)
    client.close()


def test_a_report_that_fails_does_not_undo_a_delivery(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    spool.add([JobInsert("t", "q", "[[], {}]", 5, 1, client_id=str(uuid.uuid4()))])
    stored: list[Any] = []

    def report(n: int, status: Any) -> None:
        raise ConnectionError("the database went away after the forward")

    forwarder = Forwarder(spool, store=lambda jobs: stored.extend(jobs) or [],
                          resolve=lambda jobs: [None] * len(jobs), report=report)
    assert forwarder.forward_all() == 1 and len(stored) == 1
    assert spool.status().depth == 0
    spool.close()


def test_percentiles_from_the_wait_histogram() -> None:
    # 10 attempts: 5 within 0.1s, 9 within 1s, all within 5s.
    cumulative = [5, 5, 9, 10, 10, 10, 10, 10, 10, 10]
    assert histogram_quantile(0.5, cumulative, 10) == 0.1
    p95 = histogram_quantile(0.95, cumulative, 10)
    assert p95 is not None and 1.0 < p95 < 5.0
    assert histogram_quantile(0.5, [0] * 10, 0) is None
    assert histogram_quantile(0.99, [0] * 10, 3) == float("inf")  # all waited over an hour


def test_run_times_are_kept_as_a_histogram_in_the_aggregates(backend_url: str) -> None:
    backend = open_backend(backend_url)
    backend.migrate()
    try:
        since = backend.now() - 120

        def leased(seconds: float = 30.0) -> tuple[int, int]:
            job_id = backend.job_insert_many([JobInsert("t", "q", "[[], {}]", 5, 1)])[0].id
            [held] = backend.job_fetch(FetchParams("w1", ["q"], 1, seconds, start=1))
            return job_id, held.lease_token

        fast = leased()
        backend.job_complete_many([Completion(*fast, "succeeded", result_json="1")])
        slow = leased()
        time.sleep(0.3)
        backend.job_complete_many([Completion(*slow, "succeeded", result_json="1")])
        lost = leased(seconds=0.05)  # its worker vanishes: the rescue counts it, run time too
        time.sleep(0.6)
        assert backend.job_rescue() == [lost[0]]
        [row] = backend.stats_read(StatsQuery(since, backend.now() + 120))
        assert (row.attempts, row.succeeded, row.dead) == (3, 2, 1)
        counts = dict(zip(RUN_BUCKETS, row.run_le, strict=True))
        assert counts[0.25] == 1 and counts[0.5] == 2 and counts[1.0] == 3, counts
        assert row.run_le == tuple(sorted(row.run_le))  # cumulative
    finally:
        backend.close()


def test_the_charts_show_run_time_percentiles(web: Web) -> None:
    @web.app.task()
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    for _ in range(4):
        nap.enqueue(0.3)
    drain(web.app, timeout=15)
    html = sign_in(web, "viewer").get("/charts?task=nap").text
    [cells] = re.findall(r'<tr data-key="default/nap">(.*?)</tr>', html, re.S)
    run_p50 = re.findall(r'<td class="num[^"]*">([^<]*)</td>', cells)[-4]
    assert re.fullmatch(r"(2[5-9]\d|[34]\d\d)ms", run_p50), run_p50  # within (0.25, 0.5]
    assert short_seconds(float("inf"), RUN_BUCKETS) == "> 5m 00s"
