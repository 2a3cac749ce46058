"""Silent-failure detectors: each fires within two of its intervals, on both backends where
the database is involved, and a healthy system (a worker serving its queues, known tasks,
cron on time, nothing dead, an empty spool) makes none fire. Real workers on real
databases; the detectors' interval is shortened to one second."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from conveyor import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.incidents.detectors import DetectorResult, DetectorSettings
from conveyor.incidents.metrics import DetectorCollector
from conveyor.types import JobState

INTERVAL = 1.0
SETTINGS = DetectorSettings(interval=INTERVAL, dlq_interval=INTERVAL, alive_within=5.0)


@contextmanager
def running(app: Conveyor, **settings: Any) -> Iterator[Any]:
    settings.setdefault("install_signals", False)
    worker = app.worker(**settings)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop(graceful=False)
        thread.join(timeout=30)


def firing(app: Conveyor, name: str) -> DetectorResult:
    [result] = app.incidents.detect(SETTINGS, only=(name,))
    assert result.error is None, result.error
    return result


def fires_within_two_intervals(app: Conveyor, name: str, since: float) -> DetectorResult:
    """Look every quarter interval; the detector must fire by two intervals after `since`."""
    while True:
        result = firing(app, name)
        if result.firing:
            assert time.monotonic() - since <= 2 * INTERVAL + 0.5, "fired, but late"
            return result
        assert time.monotonic() - since <= 2 * INTERVAL + 0.5, f"{name} did not fire in time"
        time.sleep(INTERVAL / 4)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_healthy_system_makes_no_detector_fire_and_doctor_exits_0(
    make_app: Any, backend_url: str, tmp_path: Path,
) -> None:
    app: Conveyor = make_app()

    @app.cron("* * * * *")
    @app.task(max_attempts=3)
    def tick() -> None:
        pass

    @app.task
    def work(n: int) -> int:
        return n

    with running(app, concurrency=2, heartbeat_interval=0.2):
        work.enqueue_many([(i,) for i in range(20)])
        wait_until(lambda: not app.backend.job_list(JobFilter(
            states=(JobState.AVAILABLE, JobState.RUNNING, JobState.SCHEDULED), limit=1)))
        wait_until(lambda: bool(app.backend.job_list(JobFilter(task="tick", limit=1))))
        time.sleep(INTERVAL * 1.5)  # past one interval: a stalled worker would show now
        results = app.incidents.detect(SETTINGS)
        assert [(r.name, r.findings, r.error) for r in results if r.firing or r.error] == []
        assert len(results) == 6
        # The CLI, in a process of its own, agrees and exits 0.
        (tmp_path / "healthy.py").write_text(
            "from conveyor import Conveyor\n"
            f"app = Conveyor({backend_url!r})\n"
            "@app.cron('* * * * *')\n@app.task(max_attempts=3)\ndef tick() -> None: ...\n"
            "@app.task\ndef work(n: int) -> int: return n\n"
        )
        doctor = subprocess.run(
            [sys.executable, "-m", "conveyor", "doctor", "-A", "healthy:app", "--json"],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def test_a_queue_with_waiting_jobs_and_no_worker_serving_it_fires(make_app: Any) -> None:
    app: Conveyor = make_app()

    @app.task(queue="reports")
    def report() -> None:
        pass

    @app.task
    def other() -> None:
        pass

    with running(app, queues=["default"], heartbeat_interval=0.2):
        wait_until(lambda: bool(app.backend.worker_list(5.0)))
        assert not firing(app, "unserved_queue").firing
        report.enqueue()
        result = fires_within_two_intervals(app, "unserved_queue", time.monotonic())
        [finding] = result.findings
        assert finding.subject == "reports" and "--queues reports" in finding.message
        # The metric the generated alert rule reads says the same.
        registry = CollectorRegistry()
        registry.register(DetectorCollector(lambda: app.incidents.detect(SETTINGS)))
        exported = generate_latest(registry).decode()
        assert 'conveyor_detector_firing{detector="unserved_queue"} 1.0' in exported
        assert 'conveyor_detector_firing{detector="stalled_worker"} 0.0' in exported
        # Pausing it is a choice, not a silent failure.
        app.operations.pause_queue("reports", actor="test", source="test")
        assert not firing(app, "unserved_queue").firing


def test_jobs_going_dead_because_no_worker_knows_their_task_fire(make_app: Any) -> None:
    producer: Conveyor = make_app()

    @producer.task
    def ghost() -> None:
        pass

    consumer: Conveyor = make_app()  # deployed without the task
    with running(consumer, heartbeat_interval=0.2):
        assert not firing(consumer, "unknown_task").firing
        ghost.enqueue()
        started = time.monotonic()
        wait_until(lambda: bool(consumer.backend.job_list(JobFilter(states=[JobState.DEAD]))))
        result = fires_within_two_intervals(consumer, "unknown_task", started)
        assert "ghost" in result.findings[0].message


def test_a_worker_alive_but_making_no_progress_fires(make_app: Any) -> None:
    app: Conveyor = make_app()
    release = threading.Event()

    @app.task
    def hang() -> None:
        release.wait(30)

    with running(app, heartbeat_interval=0.1, concurrency=1):
        hang.enqueue()
        wait_until(lambda: bool(app.backend.job_list(JobFilter(states=[JobState.RUNNING]))))
        started = time.monotonic()
        result = fires_within_two_intervals(app, "stalled_worker", started)
        assert "holds 1 job(s) but finished none" in result.findings[0].message
        release.set()
        # Progress again: quiet at the next heartbeat.
        wait_until(lambda: not firing(app, "stalled_worker").firing, timeout=5)


def test_the_dead_letter_queue_growing_fires(make_app: Any) -> None:
    app: Conveyor = make_app()

    @app.task(max_attempts=1)
    def doomed() -> None:
        raise RuntimeError("no")

    assert not firing(app, "dlq_growing").firing
    with running(app, heartbeat_interval=0.2):
        doomed.enqueue()
        wait_until(lambda: bool(app.backend.job_list(JobFilter(states=[JobState.DEAD]))))
        result = fires_within_two_intervals(app, "dlq_growing", time.monotonic())
        assert "1 job(s) went to the dead-letter queue" in result.findings[0].message


def test_a_cron_entry_that_did_not_fire_on_time_fires(make_app: Any) -> None:
    app: Conveyor = make_app()

    @app.cron("* * * * *", name="nightly")
    @app.task
    def nightly() -> None:
        pass

    # No worker runs cron: the last tick (at most a minute old) has no job.
    result = fires_within_two_intervals(app, "missed_cron", time.monotonic())
    assert result.findings[0].subject == "nightly"
    with running(app, heartbeat_interval=0.2):
        wait_until(lambda: not firing(app, "missed_cron").firing)


def test_a_spool_that_is_not_draining_fires_even_when_the_database_is_away(
    tmp_path: Path,
) -> None:
    app = Conveyor("postgresql://postgres@127.0.0.1:1/away", when_unreachable="spool",
                   spool_path=tmp_path / "spool", unreachable_timeout=0.1, connect_timeout=0.2)

    @app.task
    def send() -> None:
        pass

    try:
        assert not app.incidents.detect(SETTINGS, only=("spool_stuck",))[0].firing
        send.enqueue()
        started = time.monotonic()
        while True:
            [result] = app.incidents.detect(SETTINGS, only=("spool_stuck",))
            if result.firing:
                break
            assert time.monotonic() - started <= 2 * INTERVAL + 0.5
            time.sleep(INTERVAL / 4)
        assert "holds 1 job(s)" in result.findings[0].message
        # The others say they could not look, rather than "all is well".
        others = app.incidents.detect(SETTINGS)
        assert all(r.error for r in others if r.name != "spool_stuck")
    finally:
        app.close(flush_timeout=0.1)


def test_slo_rules_carry_one_alert_per_detector_on_its_metric(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from conveyor.cli import cli

    (tmp_path / "noslo.py").write_text(
        f"from conveyor import Conveyor\napp = Conveyor('sqlite:///{tmp_path}/j.db')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        result = CliRunner().invoke(cli, ["slo", "rules", "noslo:app"], catch_exceptions=False)
    finally:
        sys.path.remove(str(tmp_path))
    assert result.exit_code == 0, result.output
    [group] = yaml.safe_load(result.output)["groups"]
    assert group["name"] == "conveyor-silent-failures"
    assert {r["labels"]["detector"] for r in group["rules"]} == {
        "unserved_queue", "unknown_task", "stalled_worker", "dlq_growing", "missed_cron",
        "spool_stuck"}
    assert all("conveyor_detector_firing" in r["expr"] for r in group["rules"])


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_detector_settings_refuse_nonsense(bad: float) -> None:
    from conveyor.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="must be > 0"):
        DetectorSettings(interval=bad)
