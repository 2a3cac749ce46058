"""Faults 9 and 12: a burst of 100x the normal enqueue rate, and 32 workers racing to claim."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.faultapp import build

pytestmark = [pytest.mark.faults, pytest.mark.slow]

NORMAL_RATE = 20.0
"""Jobs a second in normal operation; the burst asks for 100 times that."""
BURST_SECONDS = 10.0
"""Shorter than a 30 s burst to keep CI lean: latency and memory are sampled over
the whole window, and a longer one only repeats the same samples."""
ENQUEUERS = 4


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


def test_a_burst_of_100x_the_normal_rate_keeps_latency_and_memory_bounded_and_drains(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    app = build(url)
    worker = harness.start_worker(tmp_path, url, history, "-c", "8")
    target = 100 * NORMAL_RATE
    latencies: list[float] = []
    acknowledged: list[tuple[int, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def enqueuer(index: int) -> None:
        pace = ENQUEUERS / target
        n = index
        next_at = time.monotonic()
        try:
            while time.monotonic() < burst_end:
                started = time.monotonic()
                job = app.tasks["work"].enqueue(n, 0.0)
                elapsed = time.monotonic() - started
                with lock:
                    latencies.append(elapsed)
                    acknowledged.append((n, job.id))
                n += ENQUEUERS
                next_at += pace
                time.sleep(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        harness.wait_until(lambda: "started" in (tmp_path / "worker.log").read_text(), 60,
                           "the worker to start")
        start_rss = peak_rss_mb(worker.pid)
        burst_start = time.monotonic()
        burst_end = burst_start + BURST_SECONDS
        threads = [threading.Thread(target=enqueuer, args=(i,)) for i in range(ENQUEUERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_end = time.time()
        burst_took = time.monotonic() - burst_start
        assert not errors, errors
        harness.record_enqueues(history, acknowledged)
        backlog = len(acknowledged) - harness.count_events(history, "end")
        harness.wait_until(harness.all_finished(app, len(acknowledged)), 300,
                           "the backlog to drain")
        drained = time.time() - wall_end
        worker_rss = peak_rss_mb(worker.pid)
    finally:
        assert harness.stop(worker) == 0
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]
    figures = harness.check(app, history, fault="burst", backend=backend, notes={
        "target_rate": target, "achieved_rate": round(len(acknowledged) / burst_took),
        "burst_s": BURST_SECONDS, "backlog_at_end": backlog,
        "enqueue_p50_ms": round(p50 * 1000, 1), "enqueue_p99_ms": round(p99 * 1000, 1),
        "enqueue_max_ms": round(latencies[-1] * 1000, 1),
        "worker_rss_mb_before": round(start_rss, 1), "worker_peak_rss_mb": round(worker_rss, 1),
    })
    figures.recovery_s = round(drained, 3)  # from the end of the burst to an empty queue
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == len(acknowledged)
    assert latencies[-1] < 5.0  # bounded: no enqueue waited anywhere near a timeout
    assert worker_rss < start_rss + 100  # the backlog stays in the database, not the worker


def test_thirty_two_workers_in_four_processes_claim_no_job_twice(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    total = 3_000
    app = build(url)
    harness.enqueue_many(app, history, "work", [(0.0,)] * total)
    # A long lease: a slow heartbeat on a loaded machine must not pass for a double claim.
    env = harness.app_env(url, history, LEASE="30")
    fleet = [harness.start_worker(tmp_path, url, history, "-c", "8", env=env,
                                  log_name=f"worker{i}") for i in range(4)]
    try:
        harness.wait_until(harness.all_finished(app, total), 300, "every job to finish")
    finally:
        codes = [harness.stop(proc) for proc in fleet]
    assert codes == [0, 0, 0, 0]
    logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(4))
    pids = {e.pid for e in harness.read_history(history) if e.kind == "start"}
    figures = harness.check(app, history, fault="claim-race", backend=backend,
                            notes={"processes": 4, "threads_each": 8,
                                   "processes_that_ran_jobs": len(pids),
                                   "locked_errors": logs.lower().count("locked")})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total
    assert figures.extra_executions == 0 and figures.broken_leases == 0  # none claimed twice
    assert "database is locked" not in logs.lower()
    assert "backend unavailable" not in logs
