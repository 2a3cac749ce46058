"""A worker's cron on a clock the test moves (SQLite reads time from the app's clock)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.clock import ManualClock

START = 1_800_000_030.0  # 30 s past a whole minute


def wait_for_jobs(app: Conveyor, count: int) -> list[Any]:
    deadline = time.monotonic() + 15
    while True:
        jobs = app.backend.job_list(JobFilter(limit=100))
        if len(jobs) >= count or time.monotonic() > deadline:
            return jobs
        time.sleep(0.02)


def test_ticks_fire_as_time_passes_an_outage_catches_up_once_and_restarts_repeat_nothing(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START)
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock, poll_interval=0.02)

    @app.cron("* * * * *")
    @app.task()
    def tick() -> None: ...

    def run_worker() -> tuple[Any, threading.Thread]:
        worker = app.worker(install_signals=False)
        thread = threading.Thread(target=worker.run)
        thread.start()
        return worker, thread

    worker, thread = run_worker()
    try:
        assert len(wait_for_jobs(app, 1)) == 1  # the minute that has begun
        clock.advance(60)
        assert len(wait_for_jobs(app, 2)) == 2
        clock.advance(45 * 60)  # every worker was "down" for 45 minutes
        jobs = wait_for_jobs(app, 3)
        time.sleep(0.2)  # several more passes: still one catch-up job, not 45
        assert len(app.backend.job_list(JobFilter(limit=100))) == 3
    finally:
        worker.stop()
        thread.join(10)
    newest = max(jobs, key=lambda j: j.id)
    assert newest.idempotency_key == "cron:tick:2027-01-15T08:46"

    worker, thread = run_worker()  # a restart within the same minute
    try:
        time.sleep(0.3)
    finally:
        worker.stop()
        thread.join(10)
    assert len(app.backend.job_list(JobFilter(limit=100))) == 3
    app.close()
