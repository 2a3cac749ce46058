"""Helpers for testing your own tasks on a real backend (no eager mode, no mocks).

Your app, with the tasks your modules registered on it, on a fresh SQLite file
for the length of a test:

    from conveyor.testing import drain, enqueued, temporary_database
    from myapp.tasks import app, send_welcome

    def test_signup_sends_a_welcome(tmp_path):
        with temporary_database(app, tmp_path):
            signup("a@example.com")               # your code enqueues
            (job,) = enqueued(app, send_welcome)   # what was enqueued, and with what
            assert job.args == ["a@example.com"]
            drain(app)                            # runs everything, retries included
            assert app.get_job(job.id).state == "succeeded"

`temporary_app(tmp_path)` gives a new, empty app instead, for tasks defined in
the test itself.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.app import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.errors import ConfigurationError, WaitTimeout
from conveyor.task import Task
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


@contextlib.contextmanager
def temporary_database(app: Conveyor, folder: str | os.PathLike[str]) -> Iterator[Conveyor]:
    """Point `app`, tasks and all, at a fresh SQLite file in `folder` for the block.

    Everything that goes through `app` (enqueue, workers, `drain`, `get_job`)
    uses the temporary file; afterwards the app is back on its own database,
    untouched. Not for use while a worker of the app runs in another thread.
    """
    path = Path(folder) / "conveyor-test.db"
    if path.exists():
        raise ConfigurationError(
            f"{path} already exists: give temporary_database an empty folder "
            "(pytest's tmp_path is one per test)"
        )
    saved_url = app.url
    app.close()
    app.url = f"sqlite:///{path}"
    try:
        yield app
    finally:
        app.close()
        app.url = saved_url


def enqueued(
    app: Conveyor,
    task: Task[Any, Any] | str | None = None,
    *,
    states: Sequence[JobState] = (),
) -> list[JobRecord]:
    """The jobs in `app`'s database (of `task`, in `states` if given), oldest first."""
    name = task.name if isinstance(task, Task) else task
    found: list[JobRecord] = []
    before: int | None = None
    while True:
        page = app.backend.job_list(
            JobFilter(states=tuple(states), task=name, limit=1_000, before_id=before)
        )
        found += page
        if len(page) < 1_000:
            break
        before = page[-1].id
    return sorted(found, key=lambda record: record.id)


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
        if worker.stats.fetched == 0:
            # Nothing to fetch, yet jobs are unfinished: another worker holds them (or
            # held them and died). Wait a poll interval, not a busy loop of workers.
            time.sleep(min(app.poll_interval, max(0.0, deadline - time.monotonic())))
        totals.succeeded += worker.stats.succeeded
        totals.retried += worker.stats.retried
        totals.dead += worker.stats.dead


__all__ = [
    "DrainResult",
    "drain",
    "enqueued",
    "temporary_app",
    "temporary_database",
    "unfinished",
]
