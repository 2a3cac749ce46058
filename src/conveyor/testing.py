"""Helpers for testing your own tasks on a real backend (no eager mode, no mocks).

    from conveyor.testing import drain, temporary_app

    def test_welcome_email(tmp_path):
        app = temporary_app(tmp_path)           # a real SQLite file
        ...register or import tasks on app...
        job = send_welcome.enqueue(42)
        drain(app)                              # runs everything, retries included
        assert job.refresh().state == "succeeded"
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.app import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.errors import WaitTimeout
from conveyor.types import JobRecord, JobState
from conveyor.worker import WorkerStats

_UNFINISHED = (JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class DrainResult:
    succeeded: int
    retried: int
    dead: int
    rounds: int


def temporary_app(folder: str | os.PathLike[str], **settings: Any) -> Conveyor:
    """A `Conveyor` on a fresh SQLite file in `folder` (e.g. pytest's tmp_path)."""
    path = Path(folder) / "conveyor-test.db"
    settings.setdefault("poll_interval", 0.05)
    return Conveyor(f"sqlite:///{path}", **settings)


def unfinished(app: Conveyor, queues: Sequence[str] | None = None) -> list[JobRecord]:
    found: list[JobRecord] = []
    selected: Sequence[str | None] = list(queues) if queues else [None]
    for queue in selected:
        found += app.backend.job_list(JobFilter(states=_UNFINISHED, queue=queue, limit=10_000))
    return found


def drain(
    app: Conveyor,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 4,
    timeout: float = 30.0,
    **settings: Any,
) -> DrainResult:
    """Run workers until no job of `queues` (all queues by default) is waiting or running.

    Retries scheduled with a backoff are waited for (up to `timeout` seconds), so
    keep `Retry(base=...)` small in tests. Raises `WaitTimeout` if jobs remain.
    """
    deadline = time.monotonic() + timeout
    totals = WorkerStats()
    rounds = 0
    while True:
        pending = unfinished(app, queues)
        if not pending:
            return DrainResult(totals.succeeded, totals.retried, totals.dead, rounds)
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"drain: {len(pending)} job(s) still unfinished after {timeout}s "
                f"(e.g. job {pending[0].id} {pending[0].task} is {pending[0].state})"
            )
        serve = list(queues) if queues else sorted({job.queue for job in pending})
        due = [job for job in pending if job.state is not JobState.SCHEDULED]
        if not due:
            wait = min(job.run_at.timestamp() for job in pending) - app.backend.now()
            time.sleep(min(max(wait, 0.001), max(0.0, deadline - time.monotonic()), 1.0))
            # Fall through: the fetch stages jobs whose run_at has come.
        worker = app.worker(
            queues=serve, concurrency=concurrency, burst=True, install_signals=False, **settings
        )
        worker.run()
        rounds += 1
        totals.succeeded += worker.stats.succeeded
        totals.retried += worker.stats.retried
        totals.dead += worker.stats.dead


__all__ = ["DrainResult", "drain", "temporary_app", "unfinished"]
