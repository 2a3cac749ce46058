"""The named job events: what the app and the worker tell their observers.

Metrics, structured logs and tracing are observers of these events, never code
inside the worker loop. An observer subscribes to `app.events`; the worker and
the app call `emit` at the points below and go on. Events are emitted after the
backend accepted the change they describe (a fenced-out completion emits
nothing), in the process that made it.

| event       | when (emitted by the worker unless said)                   | adds              |
|-------------|------------------------------------------------------------|-------------------|
| `enqueued`  | a new job was stored, by the enqueuing process (not an     | job_id, task,     |
|             | idempotent repeat; inside a caller's transaction: before   | queue             |
|             | that transaction commits)                                  |                   |
| `started`   | an attempt was leased and handed to a slot                 | attempt, worker,  |
|             |                                                            | wait              |
| `succeeded` | the attempt returned and the job is `succeeded`            | duration          |
| `failed`    | the attempt raised, timed out or was discarded             | duration,         |
|             |                                                            | error_type        |
| `retried`   | follows `failed` when attempts are left                    | retry_delay       |
| `dead`      | follows `failed` when the job went to the dead-letter queue| error_type        |
| `lost`      | the completion was refused: the lease had moved on         | duration          |
| `breaker_opened` | a task's shared circuit breaker opened (by this       | detail (why)      |
|             | worker's write: once for the fleet); the job is the one    |                   |
|             | whose failure (or failed probe) opened it                  |                   |
| `breaker_half_open` | the cooldown was over and this worker took the     | detail            |
|             | fleet's one probe (the job is the probe)                   |                   |
| `breaker_closed` | the probe succeeded: the task's jobs run again        | detail            |
| `retry_deferred` | a retry was past the task's retry budget: deferred,   | retry_delay,      |
|             | its attempt not counted (see `conveyor.worker.breaker`)    | detail            |
| `limit_paused` | the job raised `RetryAfter(limit=...)`: the limit (or   | limit, limit_key, |
|             | one key) is paused fleet-wide (docs/flow-control.md)       | retry_delay       |

A failed attempt therefore emits two events: `failed`, then `retried` or
`dead`. Attempts lost with a dead worker (lease expiry) emit nothing in any
process; they are counted by the backend's per-minute aggregates, which is what
SLOs read (see `conveyor.insights`).

Operational events (`OpsEvent`) are the other kind the bus carries: something
that happened to the system rather than to one job (a worker started or lost a
lease, an alert fired, a breaker opened, a limit throttled). They are published
with `publish` and read by `subscribe_ops` observers (the durable event log,
see `conveyor.incidents`); a kind is a dotted name (`worker.started`,
`breaker.opened`) and new kinds need no new code anywhere. They never reach the
job observers above. A feature may also publish an event dataclass of its own
(`publish(BreakerOpened(...))`): it reaches the operational observers as an
`OpsEvent` whose kind is its `name` (or `kind`) and whose details are its fields.
Nothing listens on the job channel for them: an observer there, even one that
wants nothing, makes every attempt ask it (measured: a third of the no-op drain).

Emitting costs one attribute test when nobody listens. An observer may say
which events it wants (`subscribe(observer, wants=...)`): the worker builds an
event only when some observer wants it, so the job log at its default level
(failures only) costs a successful job nothing. An observer that raises
is logged and skipped; it can never fail a job or stop the worker. Observers run
on the emitting thread (a worker slot or its completer), so keep them quick:
counters and log lines, not network calls.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from conveyor.tracecontext import trace_id_of
from conveyor.types import JobRecord

log = logging.getLogger("conveyor.events")


class EventName(StrEnum):
    ENQUEUED = "enqueued"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    DEAD = "dead"
    LOST = "lost"
    BREAKER_OPENED = "breaker_opened"
    BREAKER_HALF_OPEN = "breaker_half_open"
    BREAKER_CLOSED = "breaker_closed"
    RETRY_DEFERRED = "retry_deferred"
    LIMIT_PAUSED = "limit_paused"


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One thing that happened to one job (see the table in the module docstring)."""

    name: EventName
    job_id: int
    task: str
    queue: str
    attempt: int = 0
    """The attempt this event is about (0 for `enqueued`)."""
    worker: str | None = None
    """The id of the worker that ran the attempt."""
    wait: float | None = None
    """`started`: seconds between the job's run_at and the start of the attempt
    (both read from the database's clock)."""
    duration: float | None = None
    """`succeeded`, `failed`, `lost`: run time of the attempt, seconds (worker's clock)."""
    error_type: str | None = None
    """`failed`, `dead`: qualified exception type, e.g. `builtins.ValueError`."""
    retry_delay: float | None = None
    """`retried`: seconds before the next attempt may start."""
    trace_id: str | None = None
    """The trace the job belongs to, when it was enqueued inside one (OpenTelemetry)."""
    detail: str | None = None
    """Flow-control events: what happened, in words (why a breaker opened, the budget)."""
    limit: str | None = None
    """`limit_paused`: the flow-control limit paused."""
    limit_key: str | None = None
    """`limit_paused`: the key paused (None: the whole limit)."""


@dataclass(frozen=True, slots=True)
class OpsEvent:
    """One operational event: something that happened to the system, not to one job."""

    kind: str
    """Dotted, family first: `worker.started`, `alert.fired`, `breaker.opened`."""
    subject: str = ""
    """What it happened to: a worker id, a queue, an alert key, a breaker name."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """JSON-serialisable facts (burn rates, counts, job ids...)."""
    actor: str = ""
    """Who did it, when someone did (an operator, a token); empty for the system."""
    at: float | None = None
    """Epoch seconds; None: when it is stored (the event log batches within a second)."""


OpsObserver = Callable[[OpsEvent], None]


def as_ops_event(event: object) -> OpsEvent:
    """A feature's own event object as an operational event: its `name` (or `kind`) is
    the kind, its fields the details; a `subject`, `breaker`, `limit`, `key`, `queue`
    or `task` field the subject; an `at` field the time."""
    name = getattr(event, "name", None) or getattr(event, "kind", None) or type(event).__name__
    details: dict[str, Any] = {}
    fields = getattr(event, "__dataclass_fields__", None)
    if isinstance(fields, dict):
        details = {f: getattr(event, f) for f in fields}
    elif isinstance(getattr(event, "__dict__", None), dict):
        details = dict(vars(event))
    details.pop("name", None)
    details.pop("kind", None)
    subject = next((str(details[k]) for k in ("subject", "breaker", "limit", "key", "queue",
                                                "task") if details.get(k)), "")
    at = details.pop("at", None)
    return OpsEvent(str(name), subject, details,
                    at=float(at) if isinstance(at, int | float) else None)


Observer = Callable[[JobEvent], None]
Wants = Callable[[EventName], bool]
"""Whether an observer wants events of this name now (asked per event: keep it quick)."""


def _wants_all(name: EventName) -> bool:
    return True


class EventBus:
    """Observers of one app's job events. Thread-safe; subscribing is rare, emitting hot."""

    __slots__ = ("_lock", "_observers", "_ops_observers")

    def __init__(self) -> None:
        self._observers: tuple[tuple[Observer, Wants], ...] = ()
        self._ops_observers: tuple[OpsObserver, ...] = ()
        self._lock = threading.Lock()

    def subscribe_ops(self, observer: OpsObserver) -> Callable[[], None]:
        """Call `observer(event)` for every operational event; returns the unsubscribe."""
        with self._lock:
            self._ops_observers = (*self._ops_observers, observer)

        def unsubscribe() -> None:
            with self._lock:
                self._ops_observers = tuple(o for o in self._ops_observers if o is not observer)

        return unsubscribe

    def publish(self, event: object) -> None:
        """Tell the operational observers (never raises; quick when nobody listens).
        `event`: an `OpsEvent`, or any event dataclass of a feature (see the module docs)."""
        if not self._ops_observers:
            return
        if not isinstance(event, OpsEvent):
            event = as_ops_event(event)
        for observer in self._ops_observers:
            try:
                observer(event)
            except Exception:
                log.exception("ops observer %r failed on %s; skipped", observer, event.kind)

    @property
    def has_observers(self) -> bool:
        """True when someone listens: emitters skip building events otherwise."""
        return bool(self._observers)

    def __bool__(self) -> bool:
        """The same as `has_observers` (kept for callers that test the bus itself)."""
        return bool(self._observers)

    def wants(self, name: EventName) -> bool:
        """True when some observer wants events of this name: build one only then."""
        for observer, wants in self._observers:
            try:
                if wants(name):
                    return True
            except Exception:
                log.exception("event filter of %r failed on %s; sending it all", observer, name)
                return True
        return False

    def subscribe(self, observer: Observer, *, wants: Wants | None = None) -> Callable[[], None]:
        """Call `observer(event)` for every event from now on; returns the unsubscribe.

        `wants`: a filter on event names, asked before each event is built; an
        observer that gives one is called only for the events it wants.
        """
        entry = (observer, wants or _wants_all)
        with self._lock:
            self._observers = (*self._observers, entry)

        def unsubscribe() -> None:
            with self._lock:
                self._observers = tuple(e for e in self._observers if e is not entry)

        return unsubscribe

    def emit(self, event: JobEvent) -> None:
        for observer, wants in self._observers:
            try:
                if wants(event.name):
                    observer(event)
            except Exception:
                log.exception("event observer %r failed on %s; skipped", observer, event.name)

    def emit_all(self, events: Iterable[JobEvent]) -> None:
        for event in events:
            self.emit(event)


class WrittenCompletion(Protocol):
    """What the events of a completion read of it (the backends' `Completion` has these)."""

    @property
    def outcome(self) -> str:
        """`succeeded`, `retry` or `dead`."""
        ...
    @property
    def error_json(self) -> str | None: ...
    @property
    def retry_delay(self) -> float: ...


def started_event(record: JobRecord, worker_id: str) -> JobEvent:
    """`started` for a freshly leased attempt."""
    wait = None
    if record.started_at is not None:
        wait = max(0.0, (record.started_at - record.run_at).total_seconds())
    return JobEvent(
        EventName.STARTED, record.id, record.task, record.queue, attempt=record.attempt,
        worker=worker_id, wait=wait, trace_id=trace_id_of(record.trace_context),
    )


def attempt_events(
    completion: WrittenCompletion,
    record: JobRecord,
    worker_id: str,
    duration: float | None,
    *,
    applied: bool,
) -> list[JobEvent]:
    """The events of one written (or refused) completion, in order."""
    trace_id = trace_id_of(record.trace_context)

    def event(
        name: EventName,
        *,
        duration: float | None = None,
        error_type: str | None = None,
        retry_delay: float | None = None,
    ) -> JobEvent:
        return JobEvent(
            name, record.id, record.task, record.queue, attempt=record.attempt,
            worker=worker_id, duration=duration, error_type=error_type,
            retry_delay=retry_delay, trace_id=trace_id,
        )

    if not applied:
        return [event(EventName.LOST, duration=duration)]
    if completion.outcome == "succeeded":
        return [event(EventName.SUCCEEDED, duration=duration)]
    error_type = _error_type(completion.error_json)
    failed = event(EventName.FAILED, duration=duration, error_type=error_type)
    if completion.outcome == "retry":
        return [failed, event(EventName.RETRIED, retry_delay=completion.retry_delay)]
    return [failed, event(EventName.DEAD, error_type=error_type)]


def _error_type(error_json: str | None) -> str | None:
    if not error_json:
        return None
    try:
        value = json.loads(error_json)
    except ValueError:
        return None
    return str(value.get("type")) if isinstance(value, dict) else None


__all__ = [
    "EventBus", "EventName", "JobEvent", "Observer", "OpsEvent", "OpsObserver", "Wants",
    "WrittenCompletion", "as_ops_event", "attempt_events", "started_event",
]
