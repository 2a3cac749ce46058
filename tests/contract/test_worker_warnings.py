"""The worker's warnings are true: a lost lease named is really lost, a count of
released running jobs counts running jobs only."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from conveyor import Conveyor, JobState
from tests.contract.test_worker import wait_until


def test_no_lease_is_reported_lost_when_none_was(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat's snapshot races the completer: a job completed between the two
    is not lost. Many short jobs and a heartbeat every few milliseconds make the race
    happen hundreds of times."""

    @app.task()
    def quick(i: int) -> int:
        return i

    jobs = quick.enqueue_many([(i,) for i in range(600)])
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    worker = app.worker(
        install_signals=False, concurrency=4, burst=True, lease=2.0, heartbeat_interval=0.005
    )
    worker.run()
    assert worker.stats.succeeded == 600 and worker.stats.lost == 0
    assert all(app.get_job(j.id).state is JobState.SUCCEEDED for j in jobs)  # type: ignore[union-attr]
    lost = [r.getMessage() for r in caplog.records if "lost the lease" in r.getMessage()]
    assert lost == []


def test_shutdown_counts_running_jobs_apart_from_prefetched_ones(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task()
    def stuck() -> None:
        started.set()
        release.wait(10)

    first = stuck.enqueue()
    waiting = [stuck.enqueue() for _ in range(3)]
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    worker = app.worker(install_signals=False, concurrency=1, prefetch=3, grace=0.1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert started.wait(10)
        wait_until(lambda: worker.stats.fetched == 4, "the prefetch to fill")
        worker.stop()
        thread.join(10)
    finally:
        release.set()
    messages = [r.getMessage() for r in caplog.records]
    running = [m for m in messages if "released" in m and "running job(s)" in m]
    assert len(running) == 1
    assert re.search(rf"released 1 running job\(s\): \[{first.id}\]", running[0])
    assert any("gave back 3 prefetched job(s) that had not started" in m for m in messages)
    assert worker.stats.released == 4
    for job in [first, *waiting]:
        record = job.refresh().record
        assert record.state is JobState.AVAILABLE and record.attempt == 0
