"""Middleware: code that wraps each enqueue and each attempt.

    class Timing(Middleware):
        def around_attempt(self, attempt, call_next):
            started = time.monotonic()
            result = call_next()
            log.info("%s took %.3fs: %s", attempt.task, time.monotonic() - started, result.kind)
            return result

    app = Conveyor(url, middleware=[Timing()])     # or app.add_middleware(Timing())

The first middleware registered is the outermost. Both hooks pass through by
default, so a middleware overrides only the one it needs.

`around_attempt` runs in the worker process around one attempt, whatever the
pool (with `pool="process"` the task runs in a child, the middleware in the
worker). It sees a read-only `Attempt` and returns an `AttemptResult`: the
one `call_next()` gave, or its own. A middleware may

- observe (time, count, log) and return `call_next()`'s result unchanged;
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

This module is core: it imports only `conveyor.types` and `conveyor.errors`.
"""

from __future__ import annotations

import json
import math
import traceback as _traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from conveyor.errors import ConfigurationError
from conveyor.types import JobRecord

MAX_DEFER = 366 * 86400.0
"""Longest deferral a middleware may ask for, in seconds (a year)."""

AttemptKind = Literal["ok", "error", "retry_after", "discard", "deferred"]
"""ok: succeeded; error: raised (retried if `retryable` and attempts are left);
retry_after: asked to run again after `retry_after` seconds; discard: asked to go
dead; deferred: given back for `defer` seconds without counting the attempt."""


def qualified_name(exc: BaseException) -> str:
    t = type(exc)
    return f"{t.__module__}.{t.__qualname__}"


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
        try:
            message = str(exc) or type(exc).__name__
        except Exception:
            message = f"<{type(exc).__name__}: str() failed>"
        return cls(
            kind="error",
            error_type=qualified_name(exc),
            message=message,
            traceback="".join(_traceback.format_exception(exc)),
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
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> AttemptResult:
        return cls(**json.loads(text))


CallNext = Callable[[], AttemptResult]


class Middleware:
    """Wraps enqueues and attempts; override the hook you need (both pass through)."""

    def around_enqueue(self, jobs: list[Any], call_next: Callable[[list[Any]], list[Any]]) -> (
        list[Any]
    ):
        """Sees each batch of jobs about to be stored (`EnqueueJob`s), returns the `Job`s."""
        return call_next(jobs)

    def around_attempt(self, attempt: Attempt, call_next: CallNext) -> AttemptResult:
        """Runs around one attempt in the worker; returns its result."""
        return call_next()


def run_attempt_chain(
    middleware: Sequence[Middleware], attempt: Attempt, innermost: CallNext
) -> AttemptResult:
    """Call `innermost` through every middleware's `around_attempt`, the first outermost."""
    call = innermost
    for m in reversed(middleware):
        call = _bind(m, attempt, call)
    return call()


def _bind(m: Middleware, attempt: Attempt, call_next: CallNext) -> CallNext:
    return lambda: m.around_attempt(attempt, call_next)


__all__ = [
    "MAX_DEFER", "Attempt", "AttemptKind", "AttemptResult", "Middleware", "run_attempt_chain",
]
