"""`conveyor slo`, `conveyor slo rules` and `conveyor worker --metrics-port`, end to end."""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from conveyor.cli import cli

APP_SOURCE = """
from conveyor import Conveyor

app = Conveyor({url!r}, poll_interval=0.05, lease=5.0)


@app.task(max_attempts=1)
def send_email(ok: bool) -> None:
    if not ok:
        raise ConnectionError("smtp down")


app.slo("emails", task=send_email, success=0.9, wait_p99=5.0, window="7d")
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    name = f"sloapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE.format(url=f"sqlite:///{tmp_path}/j.db"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    yield f"{name}:app", module
    module.app.close()
    sys.modules.pop(name, None)


def test_slo_shows_sli_budget_and_burn_rates(app_module: tuple[str, Any]) -> None:
    path, module = app_module
    send = module.app.get_task("send_email")
    send.enqueue_many([(True,)] * 8 + [(False,)] * 2)
    module.app.worker(burst=True, install_signals=False).run()

    result = CliRunner().invoke(cli, ["slo", "show", path, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    found = {o["sli"]: o for o in json.loads(result.output)["objectives"]}
    success = found["success"]
    assert (success["good"], success["total"]) == (8, 10)
    assert success["sli_value"] == pytest.approx(0.8)
    assert success["budget_left"] == pytest.approx(1 - 0.2 / 0.1)
    assert success["burn_rates"]["5m"] == pytest.approx(2.0)
    assert found["wait"]["total"] == 10 and found["wait"]["wait_threshold_seconds"] == 5.0

    table = CliRunner().invoke(cli, ["slo", "-A", path], catch_exceptions=False)
    assert table.exit_code == 0, table.output
    assert "emails" in table.output and "burn 5m" in table.output and "80.0000%" in table.output
    positional = CliRunner().invoke(cli, ["slo", path], catch_exceptions=False)
    assert positional.exit_code == 0 and positional.output == table.output

    rules = CliRunner().invoke(cli, ["slo", "rules", path], catch_exceptions=False)
    assert rules.exit_code == 0
    assert yaml.safe_load(rules.output)["groups"][0]["name"] == "conveyor-slo-emails"


def test_slo_without_objectives_says_how_to_declare_one(tmp_path: Path) -> None:
    (tmp_path / "noslo.py").write_text(
        f"from conveyor import Conveyor\napp = Conveyor('sqlite:///{tmp_path}/j.db')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "slo", "-A", "noslo:app"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 1
    assert "declares no SLO" in result.stderr and "app.slo(" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_worker_serves_metrics_on_loopback_while_it_runs(
    app_module: tuple[str, Any], tmp_path: Path
) -> None:
    path, module = app_module
    module.app.get_task("send_email").enqueue_many([(True,)] * 3 + [(False,)])
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", path, "--metrics-port", str(port),
         "--log-json"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        samples: dict[tuple[str, str], float] = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.1)
                continue
            samples = {
                (s.name, s.labels.get("task", "")): s.value
                for f in text_string_to_metric_families(text) for s in f.samples
            }
            if samples.get(("conveyor_jobs_succeeded_total", "send_email")) == 3 and samples.get(
                ("conveyor_jobs_dead_total", "send_email")
            ) == 1:
                break
            time.sleep(0.1)
        assert samples.get(("conveyor_jobs_succeeded_total", "send_email")) == 3, samples
        assert samples[("conveyor_worker_up", "")] == 1
        assert samples[("conveyor_worker_concurrency", "")] == 8
        assert samples[("conveyor_workers_alive", "")] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    dead = [json.loads(line) for line in err.splitlines() if '"event": "dead"' in line]
    assert dead and dead[0]["task"] == "send_email" and dead[0]["attempt"] == 1


def test_web_process_serves_metrics_too(app_module: tuple[str, Any], tmp_path: Path) -> None:
    path, module = app_module
    module.app.get_task("send_email").enqueue(True)
    web_port, metrics_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "web", path, "--port", str(web_port),
         "--metrics-port", str(metrics_port)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{metrics_port}/metrics", timeout=5
                ) as r:
                    text = r.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
        samples = {
            (s.name, s.labels.get("state", "")): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
        }
        assert samples[("conveyor_backend_up", "")] == 1
        assert samples[("conveyor_queue_jobs", "available")] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
