"""`conveyor grafana-dashboard`: every panel's query names metrics a running worker serves."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

APP = """
from conveyor import Conveyor, Retry

app = Conveyor(poll_interval=0.05)

@app.task()
def ok(n: int) -> int:
    return n

@app.task(max_attempts=2, retry=Retry(base=0.01, factor=1, cap=0.01))
def boom() -> None:
    raise ValueError("no")

app.slo("ok-jobs", task=ok, success=0.99, wait_p99=5.0)
"""

PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right",
    "offset", "bool",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions, keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)          # strings
    text = re.sub(r"\{[^}]*\}", "", text)                  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                 # range selectors
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = match.group(), text[match.end():].lstrip()
        if word in PROMQL_WORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def test_metric_names_parser_sees_through_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, queue) '
            '(rate(conveyor_job_wait_seconds_bucket{queue=~"$queue",le="5.0"}[5m]))) '
            "/ ignoring(x) conveyor_other")
    assert metric_names(expr) == {"conveyor_job_wait_seconds_bucket", "conveyor_other"}


def served_names(body: str) -> set[str]:
    """Sample names in an exposition, plus the series every declared family yields."""
    names: set[str] = set()
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            family = family.removesuffix("_total")  # prometheus_client writes it either way
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"],
                        "summary": ["_count", "_sum", ""]}.get(kind, [""])
            names.update(family + s for s in suffixes)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_panel_reads_metrics_a_worker_serves(tmp_path: Path) -> None:
    (tmp_path / "gapp.py").write_text(textwrap.dedent(APP))
    env = {**os.environ, "CONVEYOR_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
           "PYTHONPATH": str(tmp_path)}
    board = subprocess.run(
        [sys.executable, "-m", "conveyor", "grafana-dashboard", "gapp:app"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    dashboard = json.loads(board.stdout)
    subprocess.run(
        [sys.executable, "-c", "import gapp; gapp.ok.enqueue(1); gapp.boom.enqueue()"],
        cwd=tmp_path, env=env, check=True, timeout=60,
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "gapp:app", "--metrics-port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                body = ""
            if 'conveyor_jobs_dead_total{queue="default",task="boom"} 1.0' in body:
                break
            assert worker.poll() is None, worker.communicate()[1]
            time.sleep(0.2)
        assert "conveyor_jobs_dead_total" in body, body
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
    served = served_names(body)

    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = [p["title"] for p in panels]
    for wanted in ("Jobs by state", "Succeeded / s", "Wait (start minus run_at) percentiles",
                   "Run time percentiles", "Failed attempts / s", "Workers alive by queue",
                   "ok-jobs (success): burn rate", "ok-jobs (wait): budget left over 30d"):
        assert wanted in titles
    unknown = {}
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            missing = names - served
            if missing:
                unknown[panel["title"]] = sorted(missing)
    assert not unknown, f"panels read metrics no worker serves: {unknown}"
