"""Faults 13 and 14: a worker that dies holding prefetched jobs, and Ctrl-C on a
process-pool worker. Attempts count runs: neither costs a job that never ran an attempt."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conveyor import JobState
from tests.faults import harness
from tests.faults.faultapp import build

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
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    # The killer ends dead, after one or two executions: its first rescue counts it only
    # if its start was recorded before the crash; the second always does.
    assert killer.state is JobState.DEAD and killer.attempt == 1
    assert [e.type for e in killer.errors] == [harness.BROKEN_LEASE]
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
            assert [e.type for e in record.errors] == [harness.BROKEN_LEASE]
            finished_unrecorded.append(n)
        else:
            assert (record.state, record.attempt, record.errors) == (JobState.SUCCEEDED, 1, [])
    assert len(finished_unrecorded) <= len(deaths)
    assert figures.dead == 1 + len(finished_unrecorded)
