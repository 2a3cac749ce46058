"""Real processes: a SIGKILLed worker loses nothing; racing enqueues make one job;
the process pool stops hung tasks and survives tasks that kill their process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, JobState
from conveyor.app import load_app
from conveyor.backends.base import JobFilter

pytestmark = pytest.mark.slow

APP_MODULE = textwrap.dedent(
    """
    import os, sys, time
    from conveyor import Conveyor

    app = Conveyor(os.environ["CONVEYOR_URL"], lease=1.0, poll_interval=0.05)
    LOG = os.environ.get("EXEC_LOG", os.devnull)

    def note(line):
        with open(LOG, "a") as f:   # O_APPEND: one small write per line stays whole
            f.write(line + "\\n")

    @app.task()
    def work(n: int) -> int:
        note(f"start {n} {os.getpid()}")
        time.sleep(0.01)
        note(f"end {n} {os.getpid()}")
        return n

    @app.task(timeout=0.5, max_attempts=2)
    def hang() -> None:
        time.sleep(60)

    @app.task(max_attempts=2)
    def crash() -> None:
        os._exit(3)

    if __name__ == "__main__":
        worker = app.worker(concurrency=4, burst="--burst" in sys.argv, grace=5)
        sys.exit(worker.run())
    """
)


def write_app(tmp_path: Path, backend_url: str, log: Path | None = None) -> dict[str, str]:
    (tmp_path / "crashapp.py").write_text(APP_MODULE)
    env = {**os.environ, "CONVEYOR_URL": backend_url,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    if log is not None:
        env["EXEC_LOG"] = str(log)
    return env


def start_worker(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(tmp_path / "crashapp.py"), *args],
                            cwd=tmp_path, env=env)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def count(app: Conveyor, state: JobState) -> int:
    return len(app.backend.job_list(JobFilter(states=[state], limit=100_000)))


def test_sigkilled_worker_loses_no_job_and_a_second_worker_finishes_all(
    tmp_path: Path, backend_url: str
) -> None:
    log = tmp_path / "executions.log"
    env = write_app(tmp_path, backend_url, log)
    app = Conveyor(backend_url)
    app.migrate()

    @app.task(name="work")
    def work(n: int) -> int:
        return n

    total = 400
    jobs = work.enqueue_many([(n,) for n in range(total)])
    first = start_worker(tmp_path, env)
    try:
        wait_until(lambda: log.exists() and log.read_text().count("end") >= 40, 30,
                   "the first worker to be busy")
        wait_until(lambda: count(app, JobState.RUNNING) > 0, 10, "jobs running")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    stranded = count(app, JobState.RUNNING)
    assert stranded > 0, "the kill should leave leased jobs behind"
    second = start_worker(tmp_path, env)
    try:
        wait_until(lambda: count(app, JobState.SUCCEEDED) == total, 60, "every job to succeed")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    records = {r.id: r for r in app.backend.job_list(JobFilter(limit=100_000))}
    assert len(records) == total
    assert all(r.state is JobState.SUCCEEDED for r in records.values())  # zero lost
    assert sorted(r.result for r in records.values()) == list(range(total))
    lines = log.read_text().splitlines()
    starts = Counter(int(line.split()[1]) for line in lines if line.startswith("start"))
    assert set(starts) == set(range(total))
    rerun = {n for n, c in starts.items() if c > 1}
    # Extra executions only for jobs whose lease the kill broke.
    assert len(rerun) <= stranded
    rescued = [r for r in records.values() if r.attempt > 1]
    assert all(r.errors[0].type == "conveyor.errors.LeaseExpired" for r in rescued)
    assert {j.id for j in jobs} == set(records)
    app.close()


RACER = textwrap.dedent(
    """
    import os, sys, time
    from conveyor import Conveyor
    app = Conveyor(os.environ["CONVEYOR_URL"])

    @app.task(name="charge")
    def charge(order: int) -> None: ...

    start = float(sys.argv[1])
    while time.time() < start:
        pass
    job = charge.using(idempotency_key="order:42").enqueue(42)
    print(job.id, job.created)
    """
)


def test_eight_processes_racing_one_idempotency_key_make_one_job(
    tmp_path: Path, backend_url: str
) -> None:
    app = Conveyor(backend_url)
    app.migrate()  # created once up front, as `conveyor migrate` would
    (tmp_path / "racer.py").write_text(RACER)
    env = {**os.environ, "CONVEYOR_URL": backend_url}
    start = time.time() + 2.0
    racers = [
        subprocess.Popen([sys.executable, str(tmp_path / "racer.py"), str(start)],
                         env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    outputs = [r.communicate(timeout=60)[0].split() for r in racers]
    assert all(r.returncode == 0 for r in racers)
    ids = {out[0] for out in outputs}
    created = [out[1] for out in outputs].count("True")
    assert len(ids) == 1 and created == 1
    assert len(app.backend.job_list(JobFilter(limit=100))) == 1
    app.close()


def test_process_pool_kills_a_hung_task_and_survives_a_crashing_one(
    tmp_path: Path, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_app(tmp_path, backend_url)
    monkeypatch.setenv("CONVEYOR_URL", backend_url)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        sys.modules.pop("crashapp", None)
        app = load_app("crashapp:app")
        app.migrate()
        hung = app.tasks["hang"].enqueue()
        crashed = app.tasks["crash"].enqueue()
        fine = app.tasks["work"].enqueue_many([(n,) for n in range(20)])
        started = time.monotonic()
        worker = app.worker(pool="process", concurrency=3, app_path="crashapp:app",
                            install_signals=False)
        import threading

        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            wait_until(
                lambda: all(j.refresh().state.finished for j in [hung, crashed, *fine]), 60,
                "all jobs to finish",
            )
        finally:
            worker.stop()
            thread.join(20)
        assert time.monotonic() - started < 30  # the 60 s sleep was cut short, twice
        assert [j.state for j in fine] == [JobState.SUCCEEDED] * 20
        assert hung.state is JobState.DEAD
        assert [e.type for e in hung.record.errors] == ["conveyor.errors.TaskTimeout"] * 2
        assert crashed.state is JobState.DEAD
        assert [e.type for e in crashed.record.errors] == [
            "conveyor.worker.child.ChildDied"] * 2
        assert "exit code 3" in crashed.record.errors[0].message
        app.close()
    finally:
        sys.modules.pop("crashapp", None)
