"""Durable steps, waits and cancellation with real worker processes, on both backends.

The tasks are in steps_app.py; workers are `conveyor worker` processes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.types import JobState

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.steps_app:app"


class Workers:
    """`conveyor worker` processes on the test's database."""

    def __init__(self, url: str, history: Path) -> None:
        self.env = {**os.environ, "CONVEYOR_URL": url, "STEPS_HISTORY": str(history),
                    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", APP, "--lease", "1",
             "--prefetch", "0", "--log-level", "warning", *extra],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def workers(backend_url: str, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(backend_url, tmp_path / "history.txt")
    yield running
    running.stop()


@pytest.fixture
def steps_app(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Conveyor]:
    monkeypatch.setenv("CONVEYOR_URL", backend_url)
    monkeypatch.syspath_prepend(str(ROOT))
    from tests.integration import steps_app as module

    module.app.close()
    app = Conveyor(backend_url, poll_interval=0.05, lease=1.0)
    app.migrate()
    for task in module.app.tasks.values():
        app.tasks[task.name] = task  # type: ignore[index]
    yield app
    app.close()


def _counts(app: Conveyor) -> dict[JobState, int]:
    totals: dict[JobState, int] = defaultdict(int)
    for queue in app.backend.queue_stats():
        for state, n in queue.counts.items():
            totals[state] += n
    return totals


def _state(app: Conveyor, job_id: int) -> JobState:
    record = app.backend.job_get(job_id)
    assert record is not None
    return record.state


def test_a_completed_step_never_runs_again_while_workers_are_killed_again_and_again(
    backend_url: str, workers: Workers, steps_app: Conveyor, tmp_path: Path
) -> None:
    from tests.integration.steps_app import five_steps

    jobs = steps_app.enqueue_jobs([five_steps.prepare(n) for n in range(200)])
    ids = {job.id for job in jobs}
    procs = [workers.start("-c", "4"), workers.start("-c", "4")]
    kills = 0
    deadline = time.monotonic() + 120
    rng = random.Random(13)
    while time.monotonic() < deadline:
        # often enough that a quiet machine, which drains the 200 jobs in a few seconds,
        # still sees at least 4 kills land mid-run
        time.sleep(rng.uniform(0.1, 0.25))
        if _counts(steps_app)[JobState.SUCCEEDED] == 200:
            break
        if kills >= 8:
            continue
        # Kill a worker that is running jobs right now (its id holds its pid).
        running = steps_app.backend.job_list(JobFilter(states=[JobState.RUNNING], limit=50))
        owners = {int(r.lease_owner.split(":")[1]) for r in running if r.lease_owner}
        victims = [i for i, p in enumerate(procs) if p.pid in owners]
        if victims:
            victim = rng.choice(victims)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            kills += 1
            procs[victim] = workers.start("-c", "4")
    counts = _counts(steps_app)
    assert counts[JobState.SUCCEEDED] == 200, dict(counts)
    assert kills >= 4, "the workers were not killed mid-run often enough to show anything"

    calls: dict[tuple[int, int], list[str]] = defaultdict(list)
    for line in (tmp_path / "history.txt").read_text().splitlines():
        job, step, call = line.split()
        calls[int(job), int(step)].append(call)
    repeated = 0
    for record in steps_app.backend.job_list(JobFilter(limit=1000)):
        assert record.id in ids and record.state is JobState.SUCCEEDED
        n = record.args[0]
        for i, recorded in enumerate(record.result):
            history = calls[n, i]
            # The recorded call ran once, and it was the last call of that step: once a
            # step is recorded it never runs again. Calls before it were cut by a kill.
            assert history.count(recorded) == 1
            assert history[-1] == recorded, (n, i, history, recorded)
            repeated += len(history) - 1
        steps = steps_app.operations.job_steps(record.id)[1]
        assert [s.name for s in sorted(steps, key=lambda s: s.name)] == [
            f"s{i}" for i in range(5)
        ]
    assert len(calls) == 1000
    rescued = sum(
        any(e.type == "conveyor.errors.LeaseExpired" for e in r.errors)
        for r in steps_app.backend.job_list(JobFilter(limit=1000))
    )
    assert rescued > 0, "no job was running when its worker was killed"
    print(f"kills={kills} jobs rescued={rescued} steps cut by a kill and run again={repeated}")


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_cancelling_a_running_job_ends_it_within_the_grace_plus_one_second(
    pool: str, workers: Workers, steps_app: Conveyor
) -> None:
    from tests.integration.steps_app import cooperative, stubborn

    workers.start("-c", "2" if pool == "thread" else "1", "--pool", pool,
                  "--poll-interval", "0.1")
    grace = 1.0
    # The thread pool: one job stops by itself, one ignores the request (its thread
    # cannot be killed: the job is cancelled all the same). The process pool: the child
    # of a job that ignores the request is killed.
    tasks = [cooperative, stubborn] if pool == "thread" else [stubborn]
    for task in tasks:
        job = steps_app.enqueue_jobs([task.prepare()])[0]
        deadline = time.monotonic() + 30
        while _state(steps_app, job.id) is not JobState.RUNNING:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        time.sleep(0.3)  # well inside the task
        asked = time.monotonic()
        assert steps_app.cancel(job, grace=grace)
        while _state(steps_app, job.id) is not JobState.CANCELLED:
            assert time.monotonic() - asked <= grace + 1.0, f"{task.name} not cancelled"
            time.sleep(0.02)
        took = time.monotonic() - asked
        if task is cooperative:
            assert took < grace, "a job that checks ctx.cancelled stops before its grace"
        else:
            assert took >= grace * 0.9
        context, _ = steps_app.operations.job_steps(job.id)
        assert context is not None and context.cancel_requested_at is not None
    # Cancelling a finished job says so.
    assert not steps_app.cancel(job)
    if pool == "process":  # the one slot is free again: its killed child was replaced
        from tests.integration.steps_app import five_steps

        after = steps_app.enqueue_jobs([five_steps.prepare(7)])[0]
        assert len(after.wait(timeout=30)) == 5


def test_a_thousand_sleeping_jobs_hold_no_slot_and_resume_on_time(
    workers: Workers, steps_app: Conveyor
) -> None:
    from tests.integration.steps_app import napper

    poll = 1.0  # the default poll interval
    jobs = steps_app.enqueue_jobs([napper.prepare(2.0) for _ in range(1000)])
    for _ in range(2):
        workers.start("-c", "16", "--poll-interval", str(poll))
    deadline = time.monotonic() + 90
    while _counts(steps_app)[JobState.SUCCEEDED] < 1000:
        assert time.monotonic() < deadline, dict(_counts(steps_app))
        time.sleep(0.25)
    late: list[float] = []
    intervals: list[tuple[float, int]] = []
    for job in jobs:
        record = steps_app.backend.job_get(job.id)
        assert record is not None and record.attempt == 1  # waits spend no attempt
        steps = {s.name: s for s in steps_app.operations.job_steps(job.id)[1]}
        sleep = steps["sleep-1"]
        assert sleep.wake_at is not None
        assert sleep.wake_at - sleep.started_at == pytest.approx(2.0, abs=0.01)
        late.append(record.result["resumed"] - sleep.wake_at)
        intervals += [(sleep.started_at, 1), (sleep.wake_at, -1)]
    asleep = most = 0
    for _, change in sorted(intervals):
        asleep += change
        most = max(most, asleep)
    # 32 slots, yet hundreds of jobs slept at the same time: a sleep holds no slot.
    assert most > 500, most
    assert min(late) >= 0
    # Woken within a poll interval, then in line like any available job: a fleet that
    # needs `spread` seconds to start the thousand (over the 2 s they sleep) is still
    # starting them when the first wake, and runs the resumes that much behind.
    starts = [start for start, change in intervals if change == 1]
    spread = max(starts) - min(starts)
    allowed = poll + max(0.0, spread - 2.0)
    assert max(late) <= allowed, (
        f"latest resume {max(late):.3f}s after its wake time (first starts spread over "
        f"{spread:.2f}s)")
    print(f"most asleep at once={most} latest resume={max(late):.3f}s spread={spread:.2f}s")


def test_a_process_pool_child_records_steps_and_sleeps_over_its_own_connection(
    workers: Workers, steps_app: Conveyor
) -> None:
    from tests.integration.steps_app import five_steps, napper

    jobs = steps_app.enqueue_jobs(
        [five_steps.prepare(n) for n in range(4)] + [napper.prepare(0.2)]
    )
    workers.start("-c", "2", "--pool", "process", "--poll-interval", "0.1")
    for job in jobs:
        job.wait(timeout=60)
    for job in jobs[:4]:
        steps = steps_app.operations.job_steps(job.id)[1]
        assert sorted(s.name for s in steps) == [f"s{i}" for i in range(5)]
        assert [json.loads(s.result_json or "") for s in sorted(steps, key=lambda s: s.name)] \
            == job.wait()
    sleep = steps_app.operations.job_steps(jobs[4].id)[1][0]
    assert sleep.name == "sleep-1" and sleep.wake_at is not None
    assert jobs[4].wait()["resumed"] >= sleep.wake_at
