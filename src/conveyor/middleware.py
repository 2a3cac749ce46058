"""Middleware: the public extension point around enqueue and around each attempt.

    class Tenant(Middleware):
        def around_enqueue(self, jobs, call_next):
            return call_next([replace(j, tags=(*j.tags, "tenant:acme")) for j in jobs])

    app = Conveyor(url, middleware=[Tenant()])     # or app.add_middleware(Tenant())

Both hooks pass through by default. The first middleware registered is the
outermost: it sees the jobs first and the result last.

`around_enqueue` sees each batch of jobs about to be stored (one for
`enqueue`, many for `enqueue_many`, the due ticks for cron, the request's jobs
for the HTTP API, the batch of a transactional enqueue on the application's
connection). It may replace jobs (`dataclasses.replace`) or raise a conveyor
error to refuse the whole batch: then nothing is stored. Arguments are
checked against the task before the middleware sees them and encoded after.

`around_attempt` runs in the worker process around one attempt, whatever the
pool.

It stands just above the job handle: `around_enqueue` returns the handles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.job import Job


# -- the enqueue half -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EnqueueJob:
    """One job about to be stored, with every option resolved (call, task, app).

    Build one with `task.prepare(*args, **kwargs)`; store it with
    `app.enqueue_jobs([...])`.
    """

    task: str
    """The registered task name."""
    queue: str
    args: tuple[Any, ...]
    """Positional arguments (JSON values)."""
    kwargs: Mapping[str, Any]
    """Keyword arguments (JSON values)."""
    priority: int
    """0 is the most urgent, 9 the least."""
    max_attempts: int
    run_at: datetime | None = None
    """Earliest start (aware datetime); None: `delay` seconds after the database's now."""
    delay: float = 0.0
    """Seconds after the database's now; ignored when `run_at` is given."""
    idempotency_key: str | None = None
    idempotency_window: float = 0.0
    """Seconds after the job finishes during which the key still returns this job."""
    group: str | None = None
    """Ordering group: jobs of one group run one at a time, in enqueue order."""
    timeout: float | None = None
    """Seconds per attempt; None: no limit."""
    tags: tuple[str, ...] = ()
    trace_context: str | None = field(default=None, repr=False)
    """JSON text of the enqueuing span's W3C trace context, if any."""


EnqueueNext = Callable[[list[EnqueueJob]], "list[Job[Any]]"]


# -- the attempt half (owned by the worker) ------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attempt:
    """A read-only view of the job being run."""

    id: int
    task: str
    queue: str
    attempt: int
    max_attempts: int
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    tags: tuple[str, ...]
    worker_id: str


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The public form of an attempt's outcome."""

    succeeded: bool
    value: Any = None
    error: BaseException | None = None
    retry_after: float | None = None
    discard: bool = False


class Middleware:
    """Subclass and override the hooks you need; each passes through by default."""

    def around_enqueue(
        self, jobs: list[EnqueueJob], call_next: Callable[[list[EnqueueJob]], list[Job[Any]]]
    ) -> list[Job[Any]]:
        return call_next(jobs)

    def around_attempt(
        self, attempt: Attempt, call_next: Callable[[], AttemptResult]
    ) -> AttemptResult:
        return call_next()


def chain_enqueue(
    middleware: list[Middleware] | tuple[Middleware, ...], store: EnqueueNext
) -> EnqueueNext:
    """`store` wrapped by every middleware, the first one outermost."""
    call = store
    for m in reversed(middleware):
        if type(m).around_enqueue is not Middleware.around_enqueue:  # skip pass-throughs
            call = _bind_enqueue(m, call)
    return call


def _bind_enqueue(m: Middleware, call_next: EnqueueNext) -> EnqueueNext:
    def call(jobs: list[EnqueueJob]) -> list[Job[Any]]:
        return m.around_enqueue(jobs, call_next)

    return call


__all__ = ["Attempt", "AttemptResult", "EnqueueJob", "Middleware", "chain_enqueue"]
