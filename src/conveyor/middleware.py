"""Middleware: the public extension point around enqueue and around each attempt.

    class Tenant(Middleware):
        def around_enqueue(self, jobs, call_next):
            return call_next([replace(j, tags=(*j.tags, "tenant:acme")) for j in jobs])

    class Timing(Middleware):
        def around_attempt(self, attempt, call_next):
            started = time.monotonic()
            result = call_next()
            log.info("%s took %.3fs: %s", attempt.task, time.monotonic() - started, result.kind)
            return result

    app = Conveyor(url, middleware=[Tenant(), Timing()])   # or app.add_middleware(...)

Both hooks pass through by default, so a middleware overrides only the one it
needs. The first middleware registered is the outermost: it sees the jobs
first and the result last.

`around_enqueue` sees each batch of jobs about to be stored (one for
`enqueue`, many for `enqueue_many`, the due ticks for cron, the request's jobs
for the HTTP API, the batch of a transactional enqueue on the application's
connection). It may replace jobs (`dataclasses.replace`) or raise a conveyor
error to refuse the whole batch: then nothing is stored. Arguments are
checked against the task before the middleware sees them and encoded after.

`around_attempt` runs in the worker process around one attempt, whatever the
pool (with `pool="process"` the task runs in a child, the middleware in the
worker). It sees a read-only `Attempt` and returns an `AttemptResult`: the
one `call_next()` gave, or its own. A middleware may

- observe (time, count, log) and return `call_next()`'s result unchanged;
- run the attempt with other arguments: `call_next(replaced)`, where
  `replaced` is `dataclasses.replace(attempt, args=..., kwargs=...)`
  (decryption does this);
- replace the result, e.g. turn a failure into `AttemptResult.failed(...)`
  with `retryable=False` so the job goes dead at once;
- not call `call_next()` at all and return `AttemptResult.deferred(seconds)`:
  the job goes back to `scheduled` for `seconds`, its attempt not counted
  (the built-in circuit breaker does this while a task's circuit is open).

A middleware that raises fails the attempt with that exception (counted, and
retried as the retry policy says). The built-in middleware (the circuit
breaker, then tracing) run outside the app's own.

A deferral is bounded (`MAX_DEFER`, a year): `deferred()` refuses more, or a
value that is not a finite number, with a `ConfigurationError` (which, raised
in a middleware, fails the attempt).

It stands just above the job handle: `around_enqueue` returns the handles.
"""

from __future__ import annotations

import json
import math
import traceback as _traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from conveyor.errors import ConfigurationError
from conveyor.types import JobRecord

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
    limit_name: str | None = None
    """The flow-control limit the job waits for (docs/flow-control.md)."""
    limit_key: str | None = None
    """The key within `limit_name` ('' for none); None exactly when limit_name is."""


EnqueueNext = Callable[[list[EnqueueJob]], "list[Job[Any]]"]


# -- the attempt half ---------------------------------------------------------------
MAX_DEFER = 366 * 86400.0
"""Longest deferral a middleware may ask for, in seconds (a year)."""

AttemptKind = Literal["ok", "error", "retry_after", "discard", "deferred"]
"""ok: succeeded; error: raised (retried if `retryable` and attempts are left);
retry_after: asked to run again after `retry_after` seconds; discard: asked to go
dead; deferred: given back for `defer` seconds without counting the attempt."""


def qualified_name(exc: BaseException) -> str:
    t = type(exc)
    return f"{t.__module__}.{t.__qualname__}"


def describe(exc: BaseException) -> str:
    """`str(exc)`, or a placeholder naming the type when the exception cannot print itself
    (its `__str__` raises or returns something that is not text)."""
    try:
        text = str(exc)
    except BaseException as err:  # any failure to print must not fail us
        return f"<unprintable {type(exc).__name__}: __str__ raised {type(err).__name__}>"
    return text or type(exc).__name__


def format_traceback(exc: BaseException) -> str:
    """The formatted traceback, or a placeholder when formatting itself fails."""
    try:
        return "".join(_traceback.format_exception(exc))
    except BaseException as err:  # any failure to format must not fail us
        return (
            f"<traceback of {type(exc).__name__} unavailable: formatting it raised "
            f"{type(err).__name__}>"
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """A read-only view of the job whose attempt is about to run."""

    id: int
    task: str
    queue: str
    attempt: int
    """1 for the first attempt."""
    max_attempts: int
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    tags: tuple[str, ...]
    worker_id: str
    trace_context: dict[str, str] | None = None

    @classmethod
    def of(cls, record: JobRecord, worker_id: str) -> Attempt:
        return cls(
            id=record.id, task=record.task, queue=record.queue, attempt=record.attempt,
            max_attempts=record.max_attempts, args=tuple(record.args),
            kwargs=MappingProxyType(dict(record.kwargs)), tags=tuple(record.tags),
            worker_id=worker_id,
            trace_context=record.trace_context,
        )


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What an attempt came to. Plain data (a child process sends it back as JSON);
    build one with `succeeded`, `failed` or `deferred`."""

    kind: AttemptKind
    result_json: str | None = None
    """The return value as JSON text, when kind is "ok"."""
    error_type: str = ""
    """The exception's qualified name (e.g. "builtins.ValueError")."""
    message: str = ""
    traceback: str = ""
    retryable: bool = True
    """False when the error is in the task's dont_retry or outside its retry_on."""
    retry_after: float = 0.0
    """Seconds before the next attempt, when kind is "retry_after"."""
    defer: float = 0.0
    """Seconds the job waits, its attempt not counted, when kind is "deferred"."""
    pause_limit: str | None = None
    """kind "retry_after": the flow-control limit to pause fleet-wide for `retry_after`."""
    pause_key: str | None = None
    """Only this key of `pause_limit` (None: the whole limit)."""
    wait_step: tuple[str, str] | None = None
    """kind "deferred" by a durable wait (`ctx.sleep`): the wait step to record, as (name,
    args digest), in the same transaction that gives the job back for `defer` seconds."""

    @property
    def value(self) -> Any:
        """The task's return value (kind "ok"), decoded from JSON; None otherwise."""
        return None if self.result_json is None else json.loads(self.result_json)

    @classmethod
    def succeeded(cls, result_json: str | None = "null") -> AttemptResult:
        """A success whose return value is `result_json` (JSON text)."""
        return cls(kind="ok", result_json=result_json)

    @classmethod
    def failed(cls, exc: BaseException, *, retryable: bool = True) -> AttemptResult:
        """A failure with `exc`; retried while attempts are left, unless not `retryable`."""
        return cls(
            kind="error",
            error_type=qualified_name(exc),
            message=describe(exc),
            traceback=format_traceback(exc),
            retryable=retryable,
        )

    @classmethod
    def deferred(cls, seconds: float) -> AttemptResult:
        """Give the job back for `seconds` (0 to a year), its attempt not counted."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or not 0 <= seconds <= MAX_DEFER
        ):
            raise ConfigurationError(
                f"AttemptResult.deferred(seconds) takes a number of seconds from 0 to "
                f"{MAX_DEFER:.0f} (a year), got {seconds!r}"
            )
        return cls(kind="deferred", defer=float(seconds))

    def to_json(self) -> str:
        return json.dumps({
            "kind": self.kind, "result_json": self.result_json, "error_type": self.error_type,
            "message": self.message, "traceback": self.traceback, "retryable": self.retryable,
            "retry_after": self.retry_after, "defer": self.defer,
            "pause_limit": self.pause_limit, "pause_key": self.pause_key,
            "wait_step": self.wait_step,
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> AttemptResult:
        fields = json.loads(text)
        if fields.get("wait_step") is not None:
            fields["wait_step"] = tuple(fields["wait_step"])
        return cls(**fields)


class AttemptNext(Protocol):
    """What `around_attempt` calls to go on: with no argument, the attempt as it is;
    with an `Attempt`, that one (the same job, other arguments)."""

    def __call__(self, attempt: Attempt | None = None, /) -> AttemptResult: ...


class Middleware:
    """Subclass and override the hooks you need; each passes through by default."""

    def around_enqueue(
        self, jobs: list[EnqueueJob], call_next: Callable[[list[EnqueueJob]], list[Job[Any]]]
    ) -> list[Job[Any]]:
        """Sees each batch of jobs about to be stored; returns their handles."""
        return call_next(jobs)

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        """Runs around one attempt in the worker; returns its result."""
        return call_next()


def check_middleware(items: Sequence[Any]) -> list[Middleware]:
    found = list(items)
    for item in found:
        if not isinstance(item, Middleware):
            raise ConfigurationError(
                f"middleware must be conveyor.Middleware instances (subclass it), got {item!r}"
            )
    return found


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


def run_attempt_chain(
    middleware: Sequence[Middleware], attempt: Attempt,
    innermost: Callable[[Attempt], AttemptResult],
) -> AttemptResult:
    """Call `innermost` through every middleware's `around_attempt`, the first outermost;
    `innermost` gets the attempt as the innermost middleware passed it on."""

    def at(index: int, current: Attempt) -> AttemptResult:
        if index == len(middleware):
            return innermost(current)

        def call_next(replaced: Attempt | None = None, /) -> AttemptResult:
            return at(index + 1, current if replaced is None else replaced)

        return middleware[index].around_attempt(current, call_next)

    return at(0, attempt)


__all__ = [
    "MAX_DEFER",
    "Attempt",
    "AttemptKind",
    "AttemptNext",
    "AttemptResult",
    "EnqueueJob",
    "Middleware",
    "chain_enqueue",
    "check_middleware",
    "run_attempt_chain",
]
