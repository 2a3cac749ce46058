"""Structured job logs: one log record per job event, with the job's fields attached.

    from conveyor.observability.logs import log_job_events
    log_job_events(app)      # `conveyor worker` does this for you

Records go to the `conveyor.jobs` logger with `job_id`, `task`, `queue`,
`attempt`, `worker` (and `trace_id` when the job was traced) as attributes, so
`conveyor worker --log-json` writes them as fields of each JSON line, and any
logging set-up of your own can use them (`%(job_id)s`, a JSON formatter).

Levels: a failed attempt at WARNING, a job that went to the dead-letter queue
at ERROR; enqueues, starts, successes and retries at DEBUG (one line per job
costs real throughput at thousands of jobs a second; `--log-level debug` shows
them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from conveyor.events import EventBus, EventName, JobEvent


class HasEvents(Protocol):
    """An app, as far as its job log is concerned: the bus its job events go through."""

    @property
    def events(self) -> EventBus: ...

log = logging.getLogger("conveyor.jobs")

LEVELS = {
    EventName.ENQUEUED: logging.DEBUG,
    EventName.STARTED: logging.DEBUG,
    EventName.SUCCEEDED: logging.DEBUG,
    EventName.FAILED: logging.WARNING,
    EventName.RETRIED: logging.DEBUG,
    EventName.DEAD: logging.ERROR,
    EventName.LOST: logging.WARNING,
    # The worker logs flow-control changes itself (conveyor.worker), once, in words.
    EventName.BREAKER_OPENED: logging.DEBUG,
    EventName.BREAKER_HALF_OPEN: logging.DEBUG,
    EventName.BREAKER_CLOSED: logging.DEBUG,
    EventName.RETRY_DEFERRED: logging.DEBUG,
}


def describe(event: JobEvent) -> str:
    """The human half of a job log line."""
    head = f"job {event.job_id} {event.task}"
    if event.name is EventName.ENQUEUED:
        return f"{head} enqueued on {event.queue}"
    if event.name is EventName.STARTED:
        wait = f" after waiting {event.wait:.3f}s" if event.wait is not None else ""
        return f"{head} attempt {event.attempt} started{wait}"
    if event.detail is not None:  # flow control: breakers, retry budgets
        return f"{head}: {event.name}: {event.detail}"
    took = f" in {event.duration:.3f}s" if event.duration is not None else ""
    if event.name is EventName.SUCCEEDED:
        return f"{head} succeeded{took} (attempt {event.attempt})"
    if event.name is EventName.FAILED:
        return f"{head} attempt {event.attempt} failed{took}: {event.error_type}"
    if event.name is EventName.RETRIED:
        return f"{head} will be retried in {event.retry_delay or 0.0:.3f}s"
    if event.name is EventName.DEAD:
        return f"{head} is dead after {event.attempt} attempt(s): {event.error_type}"
    return f"{head} attempt {event.attempt} finished after its lease was lost; not recorded"


def job_log_observer(logger: logging.Logger = log) -> Callable[[JobEvent], None]:
    def observe(event: JobEvent) -> None:
        level = LEVELS[event.name]
        if not logger.isEnabledFor(level):
            return
        extra = {"job_id": event.job_id, "task": event.task, "queue": event.queue,
                 "attempt": event.attempt, "worker": event.worker, "event": str(event.name)}
        if event.trace_id is not None:
            extra["trace_id"] = event.trace_id
        logger.log(level, "%s", describe(event), extra=extra)

    return observe


def log_job_events(app: HasEvents, logger: logging.Logger = log) -> Callable[[], None]:
    """Log every job event of `app`; returns the function that stops it.

    Events whose level the logger does not log now are not even built (the
    level is asked per event, so changing it later takes effect at once).
    """

    def wants(name: EventName) -> bool:
        return logger.isEnabledFor(LEVELS[name])

    return app.events.subscribe(job_log_observer(logger), wants=wants)


__all__ = ["LEVELS", "describe", "job_log_observer", "log_job_events"]
