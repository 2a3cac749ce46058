"""Running one attempt and deciding what it means.

`run_attempt` calls the task and turns whatever happened into an
`AttemptResult` (plain data, so a child process can send it back as JSON). `to_completion`
turns an outcome into the backend write: succeeded, retry after a delay, or dead.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from conveyor.backends.base import Completion
from conveyor.backends.records import dumps
from conveyor.clock import to_datetime
from conveyor.errors import Discard, RetryAfter, TaskTimeout, UnknownTaskError
from conveyor.middleware import AttemptResult, qualified_name
from conveyor.retry import RetryPolicy
from conveyor.task import Task, check_json
from conveyor.types import AttemptError, JobRecord


def failure(exc: BaseException, *, retryable: bool = True) -> AttemptResult:
    return AttemptResult.failed(exc, retryable=retryable)


def encode_result(value: Any, task_name: str) -> str:
    try:
        check_json(value, f"{task_name}: return value")
    except Exception:
        # The work is done: retrying to fix an unstorable return value would run it again.
        return dumps({"unstorable_result": type(value).__name__})
    return dumps(value)


def classify(task: Task[Any, Any], exc: BaseException) -> AttemptResult:
    """What an exception raised by `task` means for the job."""
    if isinstance(exc, RetryAfter):
        return AttemptResult(
            kind="retry_after",
            error_type=qualified_name(exc),
            message=str(exc),
            traceback="",
            retry_after=exc.seconds,
        )
    if isinstance(exc, Discard):
        return AttemptResult(kind="discard", error_type=qualified_name(exc), message=exc.reason)
    options = task.options
    retryable = isinstance(exc, options.retry_on) and not isinstance(exc, options.dont_retry)
    return failure(exc, retryable=retryable)


def run_attempt(
    task: Task[Any, Any] | None,
    record: JobRecord,
    *,
    run_coroutine: Callable[[Any, float | None], Any] | None = None,
) -> AttemptResult:
    """Run the task function for `record` in this thread; never raises.

    Async tasks go through `run_coroutine(coro, timeout)` (a shared event loop),
    or `asyncio.run` when none is given (a child process).
    """
    if task is None:
        return failure(
            UnknownTaskError(
                f"no task named {record.task!r} is registered in this worker's app: deploy the "
                "code that defines it, then retry the job from the dead-letter queue"
            ),
            retryable=False,
        )
    try:
        if task.is_async:
            coro = task.fn(*record.args, **record.kwargs)
            if run_coroutine is not None:
                value = run_coroutine(coro, record.timeout)
            else:
                value = asyncio.run(with_timeout(coro, record.timeout))
        else:
            value = task.fn(*record.args, **record.kwargs)
    except BaseException as exc:
        return classify(task, exc)
    return AttemptResult(kind="ok", result_json=encode_result(value, task.name))


async def with_timeout(coro: Any, timeout: float | None) -> Any:
    """Await `coro`, cancelling it after `timeout` seconds with a `TaskTimeout`
    (a `TimeoutError` the task raises itself is left as it is)."""
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await coro
    except TimeoutError:
        if scope.expired():
            raise TaskTimeout(f"attempt exceeded the task's timeout of {timeout}s") from None
        raise


def to_completion(
    record: JobRecord,
    outcome: AttemptResult,
    *,
    worker_id: str,
    retry: RetryPolicy,
    now: float,
) -> Completion:
    """The backend write for an attempt's outcome."""
    if outcome.kind == "ok":
        return Completion(
            record.id, record.lease_token, "succeeded", result_json=outcome.result_json
        )
    error = AttemptError(
        attempt=record.attempt,
        type=outcome.error_type,
        message=outcome.message,
        traceback=outcome.traceback,
        worker=worker_id,
        at=to_datetime(now),
    )
    error_json = dumps(error.to_json())
    attempts_left = record.attempt < record.max_attempts
    if outcome.kind == "discard" or not outcome.retryable or not attempts_left:
        return Completion(record.id, record.lease_token, "dead", error_json=error_json)
    if outcome.kind == "retry_after":
        delay = outcome.retry_after
    else:
        delay = retry.delay(record.attempt)
    delay = delay if math.isfinite(delay) and delay >= 0 else 0.0
    return Completion(
        record.id, record.lease_token, "retry", error_json=error_json, retry_delay=delay
    )
