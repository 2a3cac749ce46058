"""Running one attempt through the app's middleware (`around_attempt`), outermost first.

The worker's own outcome (`Outcome`) becomes the public `AttemptResult` for the
middleware and back; when no middleware changed it, the original outcome is
kept as it was (with its traceback). Values of the task's secret parameters
are scrubbed from a failure's message and traceback (see `conveyor.redaction`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from conveyor import redaction
from conveyor.backends.records import dumps
from conveyor.middleware import Attempt, AttemptResult, Middleware
from conveyor.types import JobRecord
from conveyor.worker.executor import Outcome, failure

RunAttempt = Callable[[JobRecord], Outcome]


def _result_of(outcome: Outcome) -> AttemptResult:
    if outcome.kind == "ok":
        value = None if outcome.result_json is None else json.loads(outcome.result_json)
        return AttemptResult(succeeded=True, value=value, internal=outcome)
    return AttemptResult(
        succeeded=False, error_type=outcome.error_type, message=outcome.message,
        retry_after=outcome.retry_after if outcome.kind == "retry_after" else None,
        discard=outcome.kind == "discard" or not outcome.retryable, internal=outcome,
    )


def _outcome_of(result: AttemptResult) -> Outcome:
    if isinstance(result.internal, Outcome):
        return result.internal
    if result.succeeded:
        return Outcome(kind="ok", result_json=dumps(result.value))
    if result.error is not None:
        return failure(result.error, retryable=not result.discard)
    if result.retry_after is not None:
        return Outcome(kind="retry_after", error_type=result.error_type, message=result.message,
                       retry_after=result.retry_after)
    return Outcome(kind="error", error_type=result.error_type or "conveyor.Error",
                   message=result.message, retryable=not result.discard)


def attempt_through(
    middleware: list[Middleware], record: JobRecord, worker_id: str, run: RunAttempt
) -> Outcome:
    """Run `record`'s attempt with `run`, inside every middleware's around_attempt."""
    if not middleware:  # only secrets to scrub
        return scrubbed(run(record), record)
    ran = [record]

    def layer(index: int, attempt: Attempt) -> AttemptResult:
        if index == len(middleware):
            ran[0] = (
                record if attempt.args == record.args and attempt.kwargs == record.kwargs
                else replace(record, args=list(attempt.args), kwargs=dict(attempt.kwargs))
            )
            return _result_of(run(ran[0]))

        def call_next(replaced: Attempt | None = None, /) -> AttemptResult:
            return layer(index + 1, attempt if replaced is None else replaced)

        return middleware[index].around_attempt(attempt, call_next)

    view = Attempt(
        id=record.id, task=record.task, queue=record.queue, attempt=record.attempt,
        max_attempts=record.max_attempts, args=list(record.args), kwargs=dict(record.kwargs),
        tags=tuple(record.tags), worker_id=worker_id,
    )
    try:
        outcome = _outcome_of(layer(0, view))
    except Exception as exc:  # a middleware's own error fails the attempt, named
        outcome = failure(exc)
    return scrubbed(outcome, ran[0])


def scrubbed(outcome: Outcome, record: JobRecord) -> Outcome:
    """The outcome with the task's secret argument values blanked from its error text."""
    if outcome.kind == "ok":
        return outcome
    secrets = redaction.secret_values(record.task, record.args, record.kwargs)
    if not secrets:
        return outcome
    return replace(outcome, message=redaction.scrub(outcome.message, secrets),
                   traceback=redaction.scrub(outcome.traceback, secrets))


__all__ = ["attempt_through", "scrubbed"]
