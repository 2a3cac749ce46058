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
pool; it may call `call_next()` to run the attempt as it is, or
`call_next(replaced)` with a copy of the attempt whose arguments it changed
(decryption does), and may replace the result it gets back, or return one
without running the task.

It stands just above the job handle: `around_enqueue` returns the handles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.errors import ConfigurationError

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


# -- the attempt half -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attempt:
    """A read-only view of the job whose attempt is about to run."""

    id: int
    task: str
    queue: str
    attempt: int
    max_attempts: int
    args: list[Any]
    kwargs: dict[str, Any]
    tags: tuple[str, ...]
    worker_id: str


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How an attempt ended: succeeded with `value`, or failed.

    A failure carries the exception when this process has it (`error`), its
    qualified type and message always; `retry_after` when the task asked for
    one, `discard` when the job must not be retried.
    """

    succeeded: bool
    value: Any = None
    error: BaseException | None = None
    error_type: str = ""
    message: str = ""
    retry_after: float | None = None
    discard: bool = False
    internal: Any = field(default=None, repr=False, compare=False)
    """The worker's own record of the outcome, kept while the result is unchanged."""

    @classmethod
    def failed(cls, error: BaseException, *, discard: bool = False) -> AttemptResult:
        t = type(error)
        return cls(succeeded=False, error=error, error_type=f"{t.__module__}.{t.__qualname__}",
                   message=str(error), discard=discard)


class AttemptNext(Protocol):
    def __call__(self, attempt: Attempt | None = None, /) -> AttemptResult: ...


class Middleware:
    """Subclass and override the hooks you need; each passes through by default."""

    def around_enqueue(
        self, jobs: list[EnqueueJob], call_next: Callable[[list[EnqueueJob]], list[Job[Any]]]
    ) -> list[Job[Any]]:
        return call_next(jobs)

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
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


def check_middleware(items: Sequence[Any]) -> list[Middleware]:
    found = list(items)
    for item in found:
        if not isinstance(item, Middleware):
            raise ConfigurationError(
                f"middleware must be conveyor.Middleware instances (subclass it), got {item!r}"
            )
    return found


__all__ = [
    "Attempt",
    "AttemptNext",
    "AttemptResult",
    "EnqueueJob",
    "Middleware",
    "chain_enqueue",
    "check_middleware",
]
