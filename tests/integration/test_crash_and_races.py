"""Real processes: racing enqueues make one job. (SIGKILLed workers, hung and
crashing tasks are in the failure suite, tests/faults.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.backends.base import JobFilter

pytestmark = pytest.mark.slow

RACER = textwrap.dedent(
    """
    import os, sys, time
    from conveyor import Conveyor
    # The race is about the unique index, not the enqueue deadline: eight cold
    # processes connecting at once on two cores may take longer than its 1 s default.
    app = Conveyor(os.environ["CONVEYOR_URL"], unreachable_timeout=30)

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
