"""Faults 1, 2, 10 and 13: a worker SIGKILLed, SIGTERMed, or frozen past its lease
mid-drain (with a job running, or with prefetched jobs)."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import sigstop_outside_sqlite_write
from tests.faults import harness
from tests.faults.faultapp import build

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def in_flight(history: Path) -> int:
    return harness.count_events(history, "start") - harness.count_events(history, "end")


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_sigkilled_worker_mid_drain_loses_no_job_and_a_second_worker_finishes_all(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path, pool: str
) -> None:
    backend, url = fault_backend
    total = 300
    app = build(url)
    harness.enqueue_many(app, history, "work", [(0.02,)] * total)
    env = harness.app_env(url, history, LEASE="2")
    first = harness.start_worker(tmp_path, url, history, "-c", "4", "--pool", pool, env=env)
    try:
        harness.wait_until(lambda: harness.count_events(history, "end") >= 40, 60,
                           "the first worker to be busy")
        harness.wait_until(lambda: in_flight(history) > 0, 30, "jobs in flight")
        fault_at = time.time()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    stranded = in_flight(history)
    if pool == "process":  # the killed worker's children die with it, attempts and all
        children = {e.pid for e in harness.read_history(history) if e.kind == "start"}
        harness.wait_until(lambda: not any(map(alive, children)), 10,
                           "the killed worker's children to exit")
    second = harness.start_worker(tmp_path, url, history, "-c", "4", "--pool", pool, env=env,
                                  log_name="worker2")
    try:
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
    finally:
        assert harness.stop(second) == 0
    figures = harness.check(app, history, fault="sigkill", backend=backend, variant=pool,
                            fault_at=fault_at, notes={"in_flight_at_kill": stranded})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total
    assert figures.broken_leases > 0, "the kill should have left leased jobs behind"


def test_sigterm_mid_drain_finishes_or_releases_running_jobs_without_waiting_for_leases(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    lease = 30.0  # long: a job left to its lease would hold the drain up for 30 s
    grace = 1.0
    app = build(url, lease=lease)
    # The first fetch takes two long jobs (still running when the grace period ends:
    # released) and two medium ones (they finish within it); short ones wait behind.
    harness.enqueue_many(app, history, "work", [(5.0,), (5.0,), (0.4,), (0.4,)]
                         + [(0.02,)] * 20)
    total = 24
    env = harness.app_env(url, history, LEASE=str(lease))
    first = harness.start_worker(tmp_path, url, history, "-c", "4", "--grace", str(grace),
                                 env=env)
    try:
        harness.wait_until(lambda: in_flight(history) >= 4, 60, "four jobs in flight")
        fault_at = time.time()
        first.send_signal(signal.SIGTERM)
        code = first.wait(grace + 20)
        stopped_after = time.time() - fault_at
    finally:
        first.kill()
    assert code == 0
    log = (tmp_path / "worker.log").read_text()
    assert "released" in log
    second = harness.start_worker(tmp_path, url, history, "-c", "4", env=env,
                                  log_name="worker2")
    try:
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
    finally:
        assert harness.stop(second) == 0
    figures = harness.check(app, history, fault="sigterm", backend=backend, fault_at=fault_at,
                            notes={"grace_s": grace, "lease_s": lease,
                                   "worker_exit_s": round(stopped_after, 2)})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total
    assert figures.broken_leases == 0  # released at once, never left to expire
    assert figures.extra_executions == 2  # the two long jobs ran again; the medium ones did not
    assert figures.recovery_s is not None and figures.recovery_s < lease / 2


def test_a_lease_broken_by_sigstop_runs_the_job_twice_at_most_and_its_effect_once(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    effects = tmp_path / "effects.db"
    app = build(url, lease=1.0)
    total = 6
    ids = []
    for n in range(total):
        job = app.tasks["charge"].using(idempotency_key=f"order:{n}").enqueue(
            n, f"order:{n}", str(effects), 1.5)
        ids.append((n, job.id))
    harness.record_enqueues(history, ids)
    env = harness.app_env(url, history, LEASE="1")
    paused = harness.start_worker(tmp_path, url, history, "-c", "2", env=env, log_name="paused")
    other = None
    try:
        harness.wait_until(lambda: harness.count_events(history, "start") >= 2, 60,
                           "the first worker to start two jobs")
        fault_at = time.time()
        paused.send_signal(signal.SIGSTOP)
        first_two = {e.n for e in harness.read_history(history) if e.kind == "start"}
        other = harness.start_worker(tmp_path, url, history, "-c", "2", env=env,
                                     log_name="other")
        harness.wait_until(
            lambda: all(harness.count_events(history, "start", n) >= 2 for n in first_two),
            60, "the other worker to take over the frozen jobs")
        paused.send_signal(signal.SIGCONT)
        fault_end = time.time()
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
    finally:
        paused.send_signal(signal.SIGCONT)
        codes = [harness.stop(paused)] + ([harness.stop(other)] if other else [])
    assert codes == [0, 0]
    figures = harness.check(app, history, fault="duplicate-delivery", backend=backend,
                            fault_at=fault_at, notes={"paused_s": round(fault_end - fault_at, 2)})
    with sqlite3.connect(effects) as db:
        charges = dict(db.execute("SELECT order_key, token FROM charges").fetchall())
    runs = {n: harness.count_events(history, "start", n) for n in range(total)}
    figures.notes.update({"max_runs_per_job": max(runs.values()), "effects": len(charges)})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total
    assert max(runs.values()) <= 2  # twice at most
    assert figures.broken_leases >= len(first_two)
    assert sorted(charges) == sorted(f"order:{n}" for n in range(total))  # the effect, once
    # Said either when the late attempt returns after the heartbeat gave it up, or when
    # its completion comes back refused by the fencing token: whichever came first.
    assert re.search(r"outcome (is )?not recorded", (tmp_path / "paused.log").read_text())


def test_a_worker_resumed_after_its_lease_gives_its_prefetched_jobs_back_unstarted(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    total = 12
    app = build(url, lease=1.0)
    harness.enqueue_many(app, history, "work", [(0.3,)] * total)
    env = harness.app_env(url, history, LEASE="1")
    paused = harness.start_worker(tmp_path, url, history, "-c", "1", "--prefetch", "5",
                                  env=env, log_name="paused")
    other = None
    try:
        harness.wait_until(lambda: harness.count_events(history, "start") >= 1, 60,
                           "the first worker to start a job")
        fault_at = time.time()
        sigstop_outside_sqlite_write(paused, url)
        other = harness.start_worker(tmp_path, url, history, "-c", "2", env=env,
                                     log_name="other")
        time.sleep(2.5)  # past the lease: the other worker rescues the frozen one's jobs
        paused.send_signal(signal.SIGCONT)
        fault_end = time.time()
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
    finally:
        paused.send_signal(signal.SIGCONT)
        codes = [harness.stop(paused)] + ([harness.stop(other)] if other else [])
    assert codes == [0, 0], "".join(  # the logs say why a worker did not stop on SIGTERM
        (tmp_path / f"{name}.log").read_text()[-3000:] for name in ("paused", "other"))
    figures = harness.check(app, history, fault="stale-prefetch", backend=backend,
                            fault_at=fault_at, fault_end=fault_end,
                            notes={"paused_s": round(fault_end - fault_at, 2)})
    runs = {n: harness.count_events(history, "start", n) for n in range(total)}
    log = (tmp_path / "paused.log").read_text()
    figures.notes.update({
        "max_runs_per_job": max(runs.values()),
        "given_back_unstarted": log.count("waited in the prefetch past its lease"),
    })
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total and figures.lost == 0
    # Only the attempt the pause cut off runs again; no prefetched job starts twice.
    assert figures.extra_executions <= 1
