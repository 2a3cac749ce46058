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
- `retry_budget`: the retry budget of a task (the app's unless it set its own);
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

from conveyor.backends.base import (
    CancelRequest,
    Completion,
    FetchParams,
    HeldJob,
    JobContextRecord,
    StepRecord,
    StepSave,
    WorkerInfo,
)
from conveyor.clock import Clock
from conveyor.events import EventBus
from conveyor.middleware import Middleware
from conveyor.retry import RetryBudget, RetryPolicy
from conveyor.task import Task
from conveyor.types import JobRecord
from conveyor.worker.breaker import FlowState


class WorkerBackend(FlowState, Protocol):
    """The backend calls a worker makes (flow control's among them)."""

    def schema_check(self) -> None: ...
    def job_fetch(self, params: FetchParams) -> list[JobRecord]: ...
    def job_complete_many(
        self, completions: Sequence[Completion], *, started: Sequence[HeldJob] = ()
    ) -> list[int]: ...

    def job_start_many(self, worker_id: str, jobs: Sequence[HeldJob]) -> None: ...
    def workflow_inputs(self, job_id: int) -> list[Any] | None: ...
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
    def now(self) -> float: ...
    # the job context (conveyor.steps) and cancellation of running jobs
    def step_list(self, job_id: int) -> list[StepRecord]: ...
    def step_save(self, step: StepSave) -> bool: ...
    def job_suspend_many(
        self, worker_id: str, waits: Sequence[tuple[HeldJob, float, StepSave]]
    ) -> list[int]: ...
    def job_context(self, job_id: int) -> JobContextRecord | None: ...
    def job_report(
        self, job_id: int, lease_token: int, *, progress: float | None = None,
        message: str | None = None, set_progress: bool = False,
        metadata_json: str | None = None,
    ) -> bool | None: ...
    def job_cancel_watch(self, worker_id: str, job_ids: Sequence[int]) -> list[CancelRequest]: ...
    def job_cancel_running(self, job_id: int, lease_token: int) -> bool: ...
    def limit_pause(self, name: str, key: str | None, seconds: float, reason: str) -> bool: ...
    def limits_waiting(self) -> float | None: ...
    def prefetch_start_within(self, limit_name: str) -> float | None: ...


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
    def retry_budget(self) -> RetryBudget | None: ...
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
    default_retry_budget: RetryBudget | None = None

    def retry_budget(self, task: Task[Any, Any]) -> RetryBudget | None:
        own = task.options.retry_budget
        if own is False:
            return None
        return own if own is not None else self.default_retry_budget

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
            default_retry_budget=app.retry_budget,
        )


__all__ = ["CronDuty", "CronTicker", "WorkerApp", "WorkerBackend", "WorkerDeps"]
