"""Contract: periodic jobs fire once per tick, however many workers run."""

from __future__ import annotations

import threading
import time
from typing import Any

from conveyor import Conveyor, JobState
from conveyor.backends.base import JobFilter
from conveyor.scheduler import CronScheduler


def every_minute(app: Conveyor, calls: list[str]) -> Any:
    @app.cron("* * * * *")
    @app.task()
    def heartbeat_report() -> None:
        calls.append("ran")

    return heartbeat_report


def test_workers_racing_on_one_tick_make_one_job(make_app: Any) -> None:
    apps = [make_app() for _ in range(3)]  # three workers, as three processes would
    for app in apps:
        every_minute(app, [])
    schedulers = [app.cron_scheduler() for app in apps]
    start = threading.Barrier(len(schedulers))
    created: list[int] = []

    def run(scheduler: CronScheduler) -> None:
        start.wait()
        created.append(scheduler.run_due())

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    jobs = apps[0].backend.job_list(JobFilter(limit=10))
    keys = [job.idempotency_key for job in jobs]
    # One job per tick; a minute boundary may fall between the three passes.
    assert 1 <= len(jobs) <= 2 and len(set(keys)) == len(keys) == sum(created)
    assert all(k is not None and k.startswith("cron:heartbeat_report:") for k in keys)


def test_a_running_worker_enqueues_and_runs_the_current_tick_and_burst_workers_do_not(
    app: Conveyor,
) -> None:
    calls: list[str] = []
    every_minute(app, calls)
    app.worker(burst=True, install_signals=False).run()
    assert app.backend.job_list(JobFilter(limit=10)) == []

    worker = app.worker(install_signals=False)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        deadline = time.monotonic() + 15
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
        runner.join(10)
    jobs = app.backend.job_list(JobFilter(limit=10))
    assert calls and len(jobs) <= 2  # the current minute's tick (and the next, at a boundary)
    assert any(job.state is JobState.SUCCEEDED for job in jobs)
