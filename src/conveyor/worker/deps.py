"""What the worker needs from the rest of conveyor, and nothing more.

The worker never sees the app: `Worker(app, ...)` reads what it needs through
the `WorkerApp` protocol and keeps only a `WorkerDeps`:

- `open_backend`: the backend roles it calls (`WorkerBackend`: fetch, complete,
  heartbeat, release, rescue, prune, vacuum, leader election, worker liveness, wait);
- `tasks`: the task registry (name -> task);
- `events`: the event bus;
- `now`: wall-clock seconds (the app's clock, so error times agree with the
  backend's under a test's `ManualClock`);
- `middleware`: the app's attempt middleware, outermost first;
- `retry_policy`: the retry policy of a task (`None`: the app's default);
- `cron`: enqueues due periodic jobs (`run_due() -> int`) while the app has
  schedules (`wanted()`), or None (a burst or `cron=False` worker);
- `retention`: seconds finished jobs are kept before pruning;
- `start_services`: starts what runs beside a worker (alert evaluation) and
  returns how to stop it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from conveyor.backends.base import Completion, FetchParams, HeldJob, WorkerInfo
from conveyor.clock import Clock
from conveyor.events import EventBus
from conveyor.middleware import Middleware
from conveyor.retry import RetryPolicy
from conveyor.task import Task
from conveyor.types import JobRecord


class WorkerBackend(Protocol):
    """The backend calls a worker makes."""

    def schema_check(self) -> None: ...
    def job_fetch(self, params: FetchParams) -> list[JobRecord]: ...
    def job_complete_many(
        self, completions: Sequence[Completion], *, started: Sequence[HeldJob] = ()
    ) -> list[int]: ...

    def job_start_many(self, worker_id: str, jobs: Sequence[HeldJob]) -> None: ...
    def job_heartbeat(
        self, worker_id: str, jobs: Sequence[HeldJob], lease_seconds: float
    ) -> list[int]: ...
    def job_release_many(
        self, worker_id: str, jobs: Sequence[HeldJob], delay: float = 0.0
    ) -> list[int]: ...
    def job_rescue(self, limit: int = 1000) -> list[int]: ...
    def job_prune(self, older_than: float, limit: int = 10_000) -> int: ...
    def job_vacuum(self, min_dead: int) -> bool: ...
    def leader_elect(self, name: str, holder: str, ttl: float) -> bool: ...
    def leader_resign(self, name: str, holder: str) -> None: ...
    def worker_heartbeat(self, info: WorkerInfo) -> None: ...
    def worker_remove(self, worker_id: str) -> None: ...
    def wait_for_work(self, timeout: float) -> None: ...


class CronTicker(Protocol):
    def run_due(self) -> int:
        """Enqueue the periodic jobs due now; returns how many were created."""
        ...


@dataclass(frozen=True, slots=True)
class CronDuty:
    """What the cron leader runs: `run_due()`, and whether there is anything to run."""

    ticker: CronTicker
    wanted: Callable[[], bool]
    """True while the app has schedules (a worker stands for the cron role only then)."""

    def run_due(self) -> int:
        return self.ticker.run_due()


class WorkerApp(Protocol):
    """What `Worker(app, ...)` reads from the app it is given (a `Conveyor`)."""

    @property
    def backend(self) -> WorkerBackend: ...
    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]: ...
    @property
    def events(self) -> EventBus: ...
    @property
    def clock(self) -> Clock | None: ...
    @property
    def middleware(self) -> Sequence[Middleware]: ...
    @property
    def default_retry(self) -> RetryPolicy: ...
    @property
    def default_queue(self) -> str: ...
    @property
    def lease(self) -> float: ...
    @property
    def poll_interval(self) -> float: ...
    @property
    def retention(self) -> float: ...
    @property
    def schedules(self) -> Mapping[str, object]: ...
    def cron_scheduler(self) -> CronTicker: ...
    def start_services(self, holder: str) -> Callable[[], None]: ...


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    open_backend: Callable[[], WorkerBackend]
    """The backend, opened when the worker starts (not when it is built)."""
    tasks: Mapping[str, Task[Any, Any]]
    events: EventBus
    now: Callable[[], float]
    middleware: Sequence[Middleware]
    default_retry: RetryPolicy
    retention: float
    cron: CronDuty | None
    start_services: Callable[[str], Callable[[], None]]

    def retry_policy(self, task: Task[Any, Any] | None) -> RetryPolicy:
        if task is None or task.options.retry is None:
            return self.default_retry
        return task.options.retry

    @classmethod
    def from_app(cls, app: WorkerApp, *, cron: bool) -> WorkerDeps:
        import time

        clock = app.clock

        def open_backend() -> WorkerBackend:
            return app.backend

        return cls(
            open_backend=open_backend,
            tasks=app.tasks,
            events=app.events,
            now=clock.now if clock is not None else time.time,
            middleware=app.middleware,
            default_retry=app.default_retry,
            retention=app.retention,
            cron=CronDuty(app.cron_scheduler(), lambda: bool(app.schedules)) if cron else None,
            start_services=app.start_services,
        )


__all__ = ["CronDuty", "CronTicker", "WorkerApp", "WorkerBackend", "WorkerDeps"]
