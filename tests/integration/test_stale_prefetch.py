"""A worker paused longer than the lease never starts the prefetched jobs it no longer
holds (real processes, SIGSTOP/SIGCONT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState
from tests.conftest import sigstop_outside_sqlite_write

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from conveyor import Conveyor

    history = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    app = Conveyor(os.environ["CONVEYOR_URL"], lease=1.0, poll_interval=0.05)

    @app.task(name="slow")
    def slow(i: int) -> None:
        os.write(history, f"start {i}\\n".encode())
        time.sleep(0.3)

    app.worker(concurrency=1, prefetch=4, install_signals=True).run()
    """
)


def starts(history: Path) -> list[int]:
    """The jobs whose body started, in order, once per start."""
    if not history.exists():
        return []
    return [int(line.split()[1]) for line in history.read_text().splitlines()]


def test_a_resumed_worker_does_not_start_prefetched_jobs_whose_lease_passed(
    tmp_path: Path, backend_url: str
) -> None:
    app = Conveyor(backend_url, lease=1.0, poll_interval=0.05)

    @app.task(name="slow")
    def slow(i: int) -> None: ...

    jobs = slow.enqueue_many([(i,) for i in range(5)])
    history = tmp_path / "history"
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "CONVEYOR_URL": backend_url}
    worker = subprocess.Popen(
        [sys.executable, str(tmp_path / "worker.py"), str(history)], env=env,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not starts(history):
            assert time.monotonic() < deadline and worker.poll() is None, "no job started"
            time.sleep(0.01)
        sigstop_outside_sqlite_write(worker, backend_url)
        first = starts(history)[0]
        time.sleep(2.0)  # twice the lease
        rescued = app.backend.job_rescue()
        assert sorted(rescued) == sorted(j.id for j in jobs)  # one running, four prefetched
        worker.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while not all(app.get_job(j.id).state is JobState.SUCCEEDED for j in jobs):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the jobs did not finish"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    # The running job's attempt was cut off by the rescue, so it runs again; the
    # prefetched ones never started under the lease that was rescued while the worker
    # was stopped: each runs once, under the lease of its second fetch.
    assert Counter(starts(history)) == {i: 1 + (i == first) for i in range(5)}
    assert "waited in the prefetch past its lease" in stderr or "lost the lease" in stderr
    app.close()
