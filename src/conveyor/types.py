"""The job record and its states: the leaf every other module may import.

This module imports nothing else from conveyor. Each field of `JobRecord` says
who sets it and when, so the state machine can be read off one page:

    scheduled ──(run_at reached)──► available ──(fetched, leased)──► running
        ▲                                                          │
        └─── failed attempt with attempts left, or ◄───────────────┤
             deferred by an open circuit breaker                   │
                                                                   ├─► succeeded
                                                                   ├─► dead (exhausted,
                                                                   │   Discard, dont_retry,
                                                                   │   unknown task)
                                                                   └─► available (lease
                                                                       expired and rescued,
                                                                       or released at
                                                                       shutdown)
    scheduled / available ──(cancel)──► cancelled
    dead ──(operator retry)──► available
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

JSONValue = Any
"""A value that survives `json.dumps` / `json.loads` unchanged."""


class JobState(StrEnum):
    """Where a job is in its life. Stored as this text in both backends."""

    SCHEDULED = "scheduled"
    """Waiting for `run_at` (a delayed job, or a retry in backoff)."""
    AVAILABLE = "available"
    """Ready to be fetched by any worker that serves its queue."""
    RUNNING = "running"
    """Leased to one worker, which must heartbeat to keep it."""
    SUCCEEDED = "succeeded"
    """Finished: the task returned. Pruned after the retention period."""
    DEAD = "dead"
    """Finished without success: kept until an operator retries or purges it."""
    CANCELLED = "cancelled"
    """Withdrawn before it ran. Pruned after the retention period."""

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class AttemptError:
    """One failed attempt. Appended by the worker (or the rescuer for a lost lease)."""

    attempt: int
    type: str
    """Qualified exception type, e.g. `builtins.ValueError`, or `conveyor.LeaseExpired`."""
    message: str
    traceback: str
    worker: str
    """The id of the worker that ran (or lost) the attempt."""
    at: datetime

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "attempt": self.attempt,
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
            "worker": self.worker,
            "at": self.at.timestamp(),
        }

    @classmethod
    def from_json(cls, data: dict[str, JSONValue]) -> AttemptError:
        return cls(
            attempt=int(data["attempt"]),
            type=str(data["type"]),
            message=str(data["message"]),
            traceback=str(data.get("traceback", "")),
            worker=str(data.get("worker", "")),
            at=datetime.fromtimestamp(float(data["at"]), tz=UTC),
        )


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A snapshot of one row of the job table, as a backend read it."""

    id: int
    """Set by the backend at insert; stable for the job's whole life."""
    task: str
    """The registered task name (never an import path). Set at enqueue."""
    queue: str
    """Set at enqueue (call option, then task option, then `default`)."""
    args: list[JSONValue]
    """Positional arguments, JSON. Set at enqueue, never changed."""
    kwargs: dict[str, JSONValue]
    """Keyword arguments, JSON. Set at enqueue, never changed."""
    state: JobState
    priority: int
    """0 is the most urgent. Set at enqueue."""
    run_at: datetime
    """Earliest start. Set at enqueue, moved forward by each retry's backoff."""
    attempt: int
    """Attempts started so far. Incremented by the fetch that leases the job."""
    max_attempts: int
    lease_owner: str | None
    """Worker id holding the lease while `running`; cleared on every other transition."""
    lease_expires_at: datetime | None
    """Database time after which the rescuer may take the job back; extended by heartbeats."""
    lease_token: int
    """Fencing token: incremented by every fetch. A worker's writes name the token it
    was given, so a worker that lost its lease cannot overwrite the new owner's work."""
    idempotency_key: str | None
    group_key: str | None
    timeout: float | None
    """Per-attempt timeout in seconds, copied from the task at enqueue."""
    created_at: datetime
    started_at: datetime | None
    """Set by the fetch of the latest attempt."""
    finished_at: datetime | None
    """Set on entering succeeded, dead or cancelled."""
    result: JSONValue
    """The task's return value (JSON) once succeeded."""
    errors: list[AttemptError] = field(default_factory=list)
    """One entry per failed attempt, oldest first."""
    tags: list[str] = field(default_factory=list)
    trace_context: dict[str, str] | None = None
    """W3C trace context (traceparent, tracestate) of the span that enqueued the job, if any."""
    limit_name: str | None = None
    """The flow-control limit the job waits for (docs/flow-control.md). Set at enqueue."""
    limit_key: str | None = None
    """The key within the limit ('' for none). Set at enqueue."""
