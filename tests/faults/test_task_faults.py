"""Faults 3, 4 and 5: tasks that hang, crash their process, or leak memory."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from conveyor import JobState
from tests.faults import harness
from tests.faults.faultapp import build

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def ends_between(history: Path, task_ns: set[int], start: float, end: float) -> int:
    return sum(1 for e in harness.read_history(history)
               if e.kind == "end" and e.n in task_ns and start <= e.at <= end)


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_job_that_hangs_forever_is_stopped_by_its_timeout_retried_then_dead(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path, pool: str
) -> None:
    backend, url = fault_backend
    app = build(url)
    hung = app.tasks["hang"].enqueue(0)  # timeout 1 s, 2 attempts
    harness.record_enqueues(history, [(0, hung.id)])
    total = 1 + 60
    harness.enqueue_many(app, history, "work", [(0.1,)] * 60, first=1)
    worker = harness.start_worker(tmp_path, url, history, "-c", "3", "--pool", pool,
                                  "--grace", "1")
    try:
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
    finally:
        assert harness.stop(worker) == 0
    record = hung.refresh().record
    assert hung.state is JobState.DEAD
    assert [e.type for e in record.errors] == ["conveyor.errors.TaskTimeout"] * 2
    starts = [e.at for e in harness.read_history(history) if e.kind == "start" and e.n == 0]
    assert len(starts) == 2  # each attempt ran: a child's start-up is not part of its timeout
    assert record.finished_at is not None
    # The other slots kept working while the hung attempts held theirs.
    meanwhile = ends_between(history, set(range(1, total)), starts[0],
                             record.finished_at.timestamp())
    figures = harness.check(app, history, fault="hung-task", backend=backend, variant=pool,
                            notes={"other_jobs_done_meanwhile": meanwhile,
                                   "timeout": "hard" if pool == "process" else "soft"})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total - 1 and figures.dead == 1
    assert meanwhile > 0


def test_a_poison_job_that_kills_its_process_ends_dead_in_the_process_pool(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    app = build(url)
    poison = [app.tasks["crash"].enqueue(0, "exit"), app.tasks["crash"].enqueue(1, "segfault")]
    harness.record_enqueues(history, [(0, poison[0].id), (1, poison[1].id)])
    total = 2 + 100
    harness.enqueue_many(app, history, "work", [(0.02,)] * 100, first=2)
    worker = harness.start_worker(tmp_path, url, history, "-c", "3", "--pool", "process")
    try:
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
        assert worker.poll() is None, "the worker itself must survive its children's crashes"
    finally:
        assert harness.stop(worker) == 0
    messages = []
    for job in poison:
        record = job.refresh().record
        assert job.state is JobState.DEAD
        assert [e.type for e in record.errors] == ["conveyor.worker.child.ChildDied"] * 2
        messages.append(record.errors[0].message)
    assert "exit code 3" in messages[0]
    assert f"signal {int(signal.SIGSEGV)}" in messages[1]
    figures = harness.check(app, history, fault="poison-job", backend=backend,
                            variant="process")
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total - 2 and figures.dead == 2


def test_a_poison_job_that_kills_a_thread_pool_worker_ends_dead_not_in_a_crash_loop(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    """The worker process dies with the job (a segfault): a supervisor (systemd,
    Kubernetes) restarts it; the lease decides, and max_attempts ends the loop."""
    backend, url = fault_backend
    app = build(url)
    poison = app.tasks["crash"].enqueue(0, "segfault")  # 2 attempts
    harness.record_enqueues(history, [(0, poison.id)])
    total = 1 + 100
    harness.enqueue_many(app, history, "work", [(0.02,)] * 100, first=1)
    env = harness.app_env(url, history, LEASE="1")
    restarts = 0
    worker = harness.start_worker(tmp_path, url, history, "-c", "3", env=env)
    done = harness.all_finished(app, total)
    deadline = time.monotonic() + 120
    try:
        while not done():
            assert time.monotonic() < deadline, "the drain did not finish"
            if worker.poll() is not None:  # the supervisor's part: start it again
                assert worker.returncode == -signal.SIGSEGV
                restarts += 1
                worker = harness.start_worker(tmp_path, url, history, "-c", "3", env=env)
            time.sleep(0.05)
    finally:
        code = harness.stop(worker)
    assert code == 0
    record = poison.refresh().record
    assert poison.state is JobState.DEAD
    # One expired lease per crash: two counted (max_attempts=2), plus one not counted if
    # the worker died before the start of an attempt of it was recorded (it waited in a
    # prefetch); then no more.
    counted = [e for e in record.errors if "not counted" not in e.message]
    assert {e.type for e in record.errors} == {"conveyor.errors.LeaseExpired"}
    assert len(counted) == 2 and len(record.errors) == restarts
    assert restarts in (2, 3)
    figures = harness.check(app, history, fault="poison-job", backend=backend,
                            variant="thread", notes={"worker_restarts": restarts})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total - 1 and figures.dead == 1


@pytest.mark.parametrize("limit", ["memory", "jobs"])
def test_a_leaking_task_gets_its_child_process_recycled_and_loses_no_job(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path, limit: str
) -> None:
    backend, url = fault_backend
    app = build(url)
    total = 40
    harness.enqueue_many(app, history, "leak", [(8,)] * total)  # 8 MB kept per job
    option = (["--max-memory-per-child", "100"] if limit == "memory"
              else ["--max-jobs-per-child", "5"])
    worker = harness.start_worker(tmp_path, url, history, "-c", "2", "--pool", "process",
                                  *option, "--log-level", "debug")
    try:
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
    finally:
        assert harness.stop(worker) == 0
    events = harness.read_history(history)
    children = {e.pid for e in events if e.kind == "start"}
    per_child = max(sum(1 for e in events if e.kind == "start" and e.pid == pid)
                    for pid in children)
    figures = harness.check(app, history, fault="memory-leak", backend=backend,
                            variant=f"{limit}-limit",
                            notes={"children": len(children), "max_jobs_per_child": per_child,
                                   "leak_mb": total * 8})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total
    if limit == "jobs":
        assert per_child <= 5 and len(children) >= total // 5
    else:
        # 8 MB a job under a 100 MB limit: no child lives long enough to hold 320 MB
        assert len(children) >= 3 and per_child < total // 2
        assert "over the 100 MB limit: replacing it" in (tmp_path / "worker.log").read_text()


def test_children_of_a_sigkilled_worker_die_with_it(
    tmp_path: Path, history: Path
) -> None:
    """A regression test: an orphaned child used to run its (hung) attempt on forever."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app = build(url)
    app.migrate()
    app.tasks["hang"].using(timeout=600).enqueue(0)
    worker = harness.start_worker(tmp_path, url, history, "-c", "1", "--pool", "process")
    try:
        harness.wait_until(lambda: harness.count_events(history, "start") == 1, 60,
                           "the hung attempt to start")
        child = harness.read_history(history)[0].pid
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        worker.kill()
    from tests.faults.test_worker_faults import alive

    try:
        harness.wait_until(lambda: not alive(child), 10, "the orphaned child to die")
    finally:
        subprocess.run(["kill", "-9", str(child)], check=False, capture_output=True)
    app.close()
