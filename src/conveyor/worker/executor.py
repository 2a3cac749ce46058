"""Running one attempt and deciding what it means.

`run_attempt` calls the task and turns whatever happened into an
`AttemptResult` (plain data, so a child process can send it back as JSON). `to_completion`
turns an outcome into the backend write: succeeded, retry after a delay, or dead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from conveyor.arguments import context_parameter
from conveyor.backends.base import Completion
from conveyor.backends.records import dumps
from conveyor.clock import to_datetime
from conveyor.errors import (
    CancelRequested,
    Discard,
    ResultNotSerializable,
    RetryAfter,
    StepError,
    StepFailed,
    StepTimeout,
    TaskTimeout,
    UnknownTaskError,
)
from conveyor.middleware import AttemptResult, describe, qualified_name
from conveyor.retry import RetryPolicy
from conveyor.steps import ContextStore, Suspend, build_context
from conveyor.task import Task, check_json
from conveyor.types import AttemptError, JobRecord
from conveyor.workflow import in_workflow

log = logging.getLogger("conveyor.worker")


def failure(exc: BaseException, *, retryable: bool = True) -> AttemptResult:
    return AttemptResult.failed(exc, retryable=retryable)


def encode_result(value: Any, task_name: str) -> str | AttemptResult:
    """The return value as stored JSON, or the failed attempt when it is not JSON.

    Not retryable: the work is done and the same code would return the same kind of
    value again, so a retry would only run the work again to fail the same way.
    """
    try:
        check_json(value, "return value")
        return dumps(value)
    except Exception as exc:  # SerializationError, or a value json refuses
        # "return value['k'] is a set, which is not JSON: ..." -> "return value['k'] is a set"
        where = re.split(r", which|;", describe(exc), maxsplit=1)[0]
    nested = "" if where == f"return value is a {type(value).__name__}" else f" ({where})"
    return failure(ResultNotSerializable(
        f"task {task_name} returned a {type(value).__name__}, which is not JSON{nested}; "
        "return lists, dicts, str, int, float, bool or None"
    ), retryable=False)


CANCELLED_TYPE = qualified_name(CancelRequested("cancelled"))
"""The error type of an attempt that stopped because its job was cancelled: the worker
marks the job `cancelled` instead of failing it."""


def classify(task: Task[Any, Any], exc: BaseException) -> AttemptResult:
    """What an exception raised by `task` means for the job."""
    if isinstance(exc, Suspend):
        return replace(AttemptResult.deferred(exc.seconds), wait_step=exc.step)
    if isinstance(exc, CancelRequested):
        return AttemptResult(kind="error", error_type=CANCELLED_TYPE, message=describe(exc),
                             retryable=False)
    if isinstance(exc, StepError) and not isinstance(exc, StepFailed | StepTimeout):
        # A misused step (a reused name, a result that is not JSON) fails the same way
        # on every attempt: do not spend them.
        return failure(exc, retryable=False)
    if isinstance(exc, RetryAfter):
        return AttemptResult(
            kind="retry_after",
            error_type=qualified_name(exc),
            message=describe(exc),
            traceback="",
            retry_after=exc.seconds,
            pause_limit=exc.limit,
            pause_key=exc.key,
        )
    if isinstance(exc, Discard):
        reason = exc.reason if isinstance(exc.reason, str) else describe(exc)
        return AttemptResult(kind="discard", error_type=qualified_name(exc), message=reason)
    options = task.options
    retryable = isinstance(exc, options.retry_on) and not isinstance(exc, options.dont_retry)
    return failure(exc, retryable=retryable)


def run_attempt(
    task: Task[Any, Any] | None,
    record: JobRecord,
    *,
    run_coroutine: Callable[[Any, float | None], Any] | None = None,
    context_store: ContextStore | None = None,
    context_timeout: float | None = None,
) -> AttemptResult:
    """Run the task function for `record` in this thread; never raises.

    Async tasks go through `run_coroutine(coro, timeout)` (a shared event loop),
    or `asyncio.run` when none is given (a child process). A task that takes a
    `JobContext` gets one built on `context_store`.
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
        args, kwargs = with_context(
            task, record, context_store, timeout=context_timeout or record.timeout
        )
        if task.is_async:
            coro = task.fn(*args, **kwargs)
            if run_coroutine is not None:
                value = run_coroutine(coro, record.timeout)
            else:
                value = asyncio.run(with_timeout(coro, record.timeout))
        else:
            value = task.fn(*args, **kwargs)
    except BaseException as exc:
        return classify(task, exc)
    encoded = encode_result(value, task.name)
    if isinstance(encoded, AttemptResult):
        log.warning(
            "job %s: %s", record.id, encoded.message,
            extra={"job_id": record.id, "task": record.task},
        )
        return encoded
    return AttemptResult(kind="ok", result_json=encoded)


_context_parameter = functools.lru_cache(maxsize=4096)(context_parameter)


def with_context(
    task: Task[Any, Any], record: JobRecord, store: ContextStore | None,
    *, timeout: float | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """The call's arguments, with the job's context handed to a task that takes one."""
    wanted = _context_parameter(task.fn)
    if wanted is None:
        return list(record.args), dict(record.kwargs)
    if store is None:
        raise RuntimeError("this runner has no backend to build a JobContext on")
    ctx = build_context(
        store, job_id=record.id, lease_token=record.lease_token, task=record.task,
        queue=record.queue, attempt=record.attempt, max_attempts=record.max_attempts,
        timeout=timeout,
    )
    name, position = wanted
    args, kwargs = list(record.args), dict(record.kwargs)
    if position is not None and position <= len(args):
        args.insert(position, ctx)
    else:
        kwargs[name] = ctx
    return args, kwargs


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
    node = in_workflow(record.tags)
    if outcome.kind == "ok":
        return Completion(
            record.id, record.lease_token, "succeeded", result_json=outcome.result_json,
            in_workflow=node,
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
        return Completion(
            record.id, record.lease_token, "dead", error_json=error_json, in_workflow=node
        )
    if outcome.kind == "retry_after":
        delay = outcome.retry_after
    else:
        delay = retry.delay(record.attempt)
    delay = delay if math.isfinite(delay) and delay >= 0 else 0.0
    return Completion(
        record.id, record.lease_token, "retry", error_json=error_json, retry_delay=delay
    )
