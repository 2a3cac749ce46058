"""Faults 13 and 14: a worker that dies holding prefetched jobs, and Ctrl-C on a
process-pool worker. Attempts count runs: neither costs a job that never ran an attempt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor import JobState
from tests.faults import harness
from tests.faults.faultapp import build
from tests.faults.test_worker_faults import alive

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def test_a_crash_with_prefetched_jobs_costs_them_no_attempt(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    app = build(url)
    total, killer_n = 30, 10
    # max_attempts=1 everywhere: a job that lost an attempt it never ran would go dead.
    work = app.tasks["work"].using(max_attempts=1)
    jobs = []
    for n in range(total):
        if n == killer_n:  # os._exit(3) in a thread-pool task: the whole worker dies
            jobs.append(app.tasks["crash"].using(max_attempts=1).enqueue(n, "exit"))
        else:
            jobs.append(work.enqueue(n, 0.05))
    harness.record_enqueues(history, [(n, job.id) for n, job in enumerate(jobs)])
    env = harness.app_env(url, history, LEASE="2")
    # One slot and a prefetch of 6: when the killer runs, the worker holds prefetched
    # jobs it never started, as a busy worker does.
    args = ("-c", "1", "--pool", "thread", "--prefetch", "6")
    workers = [harness.start_worker(tmp_path, url, history, *args, env=env)]
    deaths: list[float] = []
    try:
        deadline = time.monotonic() + 120
        while not harness.all_finished(app, total)():
            assert time.monotonic() < deadline, "the jobs did not all finish"
            if workers[-1].poll() is not None:  # a supervisor restarts a dead worker
                deaths.append(time.time())
                assert len(deaths) <= 2, "the killer must be dead after two crashes at most"
                workers.append(harness.start_worker(tmp_path, url, history, *args, env=env,
                                                    log_name=f"worker{len(workers) + 1}"))
            time.sleep(0.05)
    finally:
        codes = [harness.stop(w) for w in workers]
    assert all(code == 3 for code in codes[:-1]) and codes[-1] == 0
    killer = jobs[killer_n].refresh().record
    figures = harness.check(app, history, fault="prefetch-crash", backend=backend,
                            fault_at=deaths[0] if deaths else None,
                            notes={"worker_crashes": len(deaths),
                                   "killer_executions": harness.count_events(
                                       history, "start", killer_n),
                                   "prefetch_per_slot": 6})
    # The killer ends dead, after one or two executions: its first rescue counts it only
    # if its start was recorded before the crash; the second always does.
    assert killer.state is JobState.DEAD and killer.attempt == 1
    assert {e.type for e in killer.errors} == {harness.BROKEN_LEASE}
    assert ["not counted" in e.message for e in killer.errors][-1:] == [False]
    assert len(killer.errors) == len(deaths)
    assert 1 <= len(deaths) <= 2
    # Every other job ran once. The prefetched ones (never started when a worker died)
    # lost nothing and succeeded on their first attempt. The only other job a crash may
    # cost is the one the slot ran just before the killer: it had finished, but the
    # worker died before its completion was written, so its attempt counts (it ran).
    events = harness.read_history(history)
    finished_unrecorded = []
    for n, job in enumerate(jobs):
        if n == killer_n:
            continue
        record = job.record
        assert harness.count_events(history, "start", n) == 1
        if record.state is JobState.DEAD:
            [end] = [e.at for e in events if e.kind == "end" and e.n == n]
            assert any(0 < death - end < 5 for death in deaths), f"job {n} lost an attempt"
            assert [e.type for e in record.errors][-1:] == [harness.BROKEN_LEASE]
            assert "not counted" not in record.errors[-1].message
            finished_unrecorded.append(n)
        else:
            # Rescued from a dead worker before it started: each lease that expired is in
            # the history, marked not counted; the one run is attempt 1.
            assert (record.state, record.attempt) == (JobState.SUCCEEDED, 1)
            assert all(e.type == harness.BROKEN_LEASE and "not counted" in e.message
                       for e in record.errors)
    figures.notes["finished_but_unrecorded"] = len(finished_unrecorded)
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert len(finished_unrecorded) <= len(deaths)
    assert figures.dead == 1 + len(finished_unrecorded)


def test_ctrl_c_on_a_process_pool_worker_finishes_or_releases_its_jobs(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    lease, grace = 30.0, 1.0
    app = build(url, lease=lease)
    # max_attempts=1: an interrupted attempt that counted would leave the job dead.
    # Two long jobs (still running when the grace period ends: released), two medium
    # ones (they finish within it), short ones behind them.
    durations = [5.0, 5.0, 0.4, 0.4] + [0.02] * 8
    total = len(durations)
    work = app.tasks["work"].using(max_attempts=1)
    jobs = [work.enqueue(n, seconds) for n, seconds in enumerate(durations)]
    harness.record_enqueues(history, [(n, job.id) for n, job in enumerate(jobs)])
    env = harness.app_env(url, history, LEASE=str(lease))
    with (tmp_path / "worker.log").open("ab") as log:
        # Its own process group, as a shell gives a foreground job: Ctrl-C in a terminal
        # sends SIGINT to every process of that group.
        worker = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", harness.APP_PATH, "--poll-interval",
             "0.05", "-c", "4", "--pool", "process", "--grace", str(grace)],
            cwd=harness.REPO, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0,
        )
    try:
        harness.wait_until(lambda: harness.count_events(history, "start") >= 4, 60,
                           "four jobs in flight")
        children = {e.pid for e in harness.read_history(history) if e.kind == "start"}
        fault_at = time.time()
        os.killpg(worker.pid, signal.SIGINT)  # Ctrl-C
        code = worker.wait(grace + 20)
        stopped_after = time.time() - fault_at
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
    harness.wait_until(lambda: not any(alive(pid)
                                       for pid in children), 10, "the children to exit")
    released = [job.refresh().record for job in jobs[:2]]
    for record in released:  # released at the end of the grace period, attempt not counted
        assert (record.state, record.attempt, record.errors) == (JobState.AVAILABLE, 0, [])
    for job in jobs[2:4]:  # finished within the grace period
        assert job.refresh().state is JobState.SUCCEEDED
    assert not [j for j in jobs if j.refresh().state is JobState.DEAD]
    assert "KeyboardInterrupt" not in (tmp_path / "worker.log").read_text()
    second = harness.start_worker(tmp_path, url, history, "-c", "4", env=env,
                                  log_name="worker2")
    try:
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
    finally:
        assert harness.stop(second) == 0
    figures = harness.check(app, history, fault="ctrl-c-process-pool", backend=backend,
                            fault_at=fault_at,
                            notes={"grace_s": grace, "worker_exit_s": round(stopped_after, 2)})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total and figures.dead == 0
    assert figures.broken_leases == 0
    assert figures.extra_executions == 2  # the two long jobs ran again; nothing else did

