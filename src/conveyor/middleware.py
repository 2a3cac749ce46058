"""The extension point for cross-cutting behaviour: hooks around enqueue and each attempt.

    class Audit(Middleware):
        def around_enqueue(self, jobs, call_next):
            log.info("enqueuing %d job(s)", len(jobs))
            return call_next(jobs)

    app = Conveyor(url, middleware=[Audit()])      # or app.add_middleware(Audit())

The first registered is the outermost. `around_enqueue` sees each batch of
jobs about to be stored (one for `enqueue`, many for `enqueue_many` and the
HTTP API's bulk enqueue) and may replace them (`dataclasses.replace`) or
raise a conveyor error to refuse the whole batch. `around_attempt` runs in
the worker process around one attempt, whatever the pool; it may call
`call_next()` to run the attempt as it is, or `call_next(replaced)` with a
copy of the attempt whose arguments it changed (decryption does), and may
replace the result it gets back, or return one without running the task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from conveyor.job import Job


@dataclass(frozen=True, slots=True)
class EnqueueJob:
    """One job about to be stored, as a middleware sees it (arguments as JSON values)."""

    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    run_at: float | None
    """Absolute earliest start (epoch seconds), or None for `delay` after now."""
    max_attempts: int
    idempotency_key: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    delay: float = 0.0
    timeout: float | None = None


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
    """Pass-through hooks; override either or both."""

    def around_enqueue(
        self, jobs: list[EnqueueJob], call_next: Callable[[list[EnqueueJob]], list[Job[Any]]]
    ) -> list[Job[Any]]:
        return call_next(jobs)

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        return call_next()


def check_middleware(items: Sequence[Any]) -> list[Middleware]:
    found = list(items)
    for item in found:
        if not isinstance(item, Middleware):
            raise ConfigurationError(
                f"middleware must be conveyor.Middleware instances (subclass it), got {item!r}"
            )
    return found


__all__ = ["Attempt", "AttemptNext", "AttemptResult", "EnqueueJob", "Middleware"]
