"""The internal Backend protocol: every storage engine implements exactly this.

Methods are named Noun-Verb (`job_insert_many`, `job_fetch`, …) and take plain
dataclasses. Every state change is one atomic transaction in the backend, and
every change a worker makes to a job it runs is *fenced* by the lease token it
was given at fetch: a worker that lost its lease changes nothing.

Times cross this boundary as float seconds since the epoch (absolute) or float
seconds (durations). "Now" is always the database's clock, never the caller's.

The protocol is internal: it may change freely between releases. The public
surface is `Conveyor`, `Task`, `Job` and the CLI.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from conveyor.errors import NotStoredError
from conveyor.types import JobRecord, JobState

SCHEMA_VERSION = 16
"""The schema version this code reads and writes. A database at another version is refused."""


@dataclass(frozen=True, slots=True)
class JobInsert:
    """One job to insert. Arguments are already validated and encoded as JSON text."""

    task: str
    queue: str
    args_json: str
    """JSON text of ``[args, kwargs]``."""
    priority: int
    max_attempts: int
    delay: float = 0.0
    """Seconds after the database's now; ignored when `run_at` is given."""
    run_at: float | None = None
    """Absolute earliest start (epoch seconds)."""
    idempotency_key: str | None = None
    idempotency_window: float = 0.0
    """Seconds after the job finishes during which the key still returns this job."""
    group_key: str | None = None
    timeout: float | None = None
    tags: Sequence[str] = ()
    trace_context: str | None = None
    """JSON text of the enqueuing span's W3C trace context (OpenTelemetry), if any."""
    client_id: str | None = None
    """Unique id chosen by the enqueuing client (a uuid), kept unique by the database:
    after an ambiguous failure the client looks the job up by it, and a forward
    retried from the spool never stores the job twice."""


class SendGate:
    """Between a caller that waits for a write with a deadline and the thread doing it.

    The backend calls `sending()` right before it sends the write (after it has a
    working connection); the caller calls `close()` when its deadline passed. The
    two are serialized: either the write was sent before the close (the outcome is
    unknown until looked up by client id) or it never will be (`sending` raises
    `NotStoredError`), so "not sent" is certain.
    """

    __slots__ = ("_closed", "_lock", "deadline", "sent", "session")

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        """`time.monotonic()` after which the caller no longer waits: a backend that
        waits for a lock (SQLite) waits no longer than this."""
        self._lock = threading.Lock()
        self._closed = False
        self.sent = False
        self.session: int | None = None
        """The database session the write was sent on (PostgreSQL backend pid), if any."""

    def sending(self, session: int | None = None) -> None:
        with self._lock:
            if self._closed:
                raise NotStoredError(
                    "the enqueue deadline passed before the jobs were sent: nothing was stored"
                )
            self.sent = True
            self.session = session

    @property
    def closed(self) -> bool:
        """True once the caller stopped waiting: a write not yet started need not start."""
        return self._closed

    def close(self) -> bool:
        """Refuse any later send; True if the write was already sent."""
        with self._lock:
            self._closed = True
            return self.sent


@dataclass(frozen=True, slots=True)
class InsertResult:
    id: int
    created: bool
    """False when an unfinished (or recently finished) job with the same
    idempotency key already existed and is returned instead."""
    state: JobState


@dataclass(frozen=True, slots=True)
class FetchParams:
    worker_id: str
    queues: Sequence[str]
    """Queues in the worker's order of preference (ties go to the earlier one)."""
    limit: int
    lease_seconds: float
    start: int = 0
    """How many of the jobs (the first ones, in the order returned) go to a free slot at
    once: the fetch records their start. The others wait in the worker (prefetch) until
    it records their start (`job_start_many`, or `started=` of `job_complete_many`)."""


@dataclass(frozen=True, slots=True)
class HeldJob:
    """A job a worker holds: the fencing token must match for any write to apply."""

    id: int
    lease_token: int


Outcome = Literal["succeeded", "retry", "dead"]


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of one attempt, written only if the worker still holds the lease."""

    job_id: int
    lease_token: int
    outcome: Outcome
    result_json: str | None = None
    """For `succeeded`: JSON text of the return value."""
    error_json: str | None = None
    """For `retry` and `dead`: JSON text of one `AttemptError` entry."""
    retry_delay: float = 0.0
    """For `retry`: seconds after the database's now before the next attempt."""


@dataclass(frozen=True, slots=True)
class JobFilter:
    states: Sequence[JobState] = ()
    queue: str | None = None
    task: str | None = None
    ids: Sequence[int] = ()
    limit: int = 100
    before_id: int | None = None
    """Cursor: only jobs with a smaller id (lists are newest first)."""
    created_after: float | None = None
    """Only jobs created at or after this time (epoch seconds). Read by `job_list` only."""
    created_before: float | None = None
    """Only jobs created before this time (epoch seconds). Read by `job_list` only."""
    error_text: str | None = None
    """Only jobs whose error history contains this text (any case). Read by `job_list` only."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    counts: dict[JobState, int]
    oldest_available_age: float | None
    """Seconds the longest-waiting due job has waited past its run_at; None when none wait."""


@dataclass(frozen=True, slots=True)
class QueuePause:
    queue: str
    paused_at: float
    paused_by: str = ""


@dataclass(frozen=True, slots=True)
class Throughput:
    """Jobs of one queue that finished in one time bucket, by outcome."""

    queue: str
    state: JobState
    """`succeeded` or `dead`."""
    bucket: int
    """Bucket number: 0 covers [since, since + bucket_seconds)."""
    jobs: int


Role = Literal["viewer", "enqueuer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "enqueuer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class TokenInsert:
    name: str
    token_hash: str
    """Hex SHA-256 of the token; the token itself is never stored."""
    role: Role
    tasks: Sequence[str] = ()
    """For `enqueuer`: the only tasks it may enqueue (empty: any)."""
    queues: Sequence[str] = ()
    """For `enqueuer`: the only queues it may enqueue into (empty: any)."""
    expires_in: float | None = None
    """Seconds from now (the database's clock) after which the token stops working."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    name: str
    token_hash: str
    role: Role
    tasks: Sequence[str]
    queues: Sequence[str]
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    expires_at: float | None = None
    expired: bool = False
    """Whether `expires_at` had passed by the database's clock when this was read."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    hostname: str
    pid: int
    queues: Sequence[str]
    concurrency: int
    started_at: float
    last_heartbeat_at: float = 0.0
    running: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


WAIT_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Upper bounds (seconds) of the queue-wait buckets kept in the per-minute aggregates
(columns `wait_le_*`), and of the `conveyor_job_wait_seconds` histogram."""


@dataclass(frozen=True, slots=True)
class JobStats:
    """Finished attempts of one queue and task: over one minute, or summed over a span.

    Written by the backend in the same transaction as the transitions it counts
    (completion batches and lease rescues); never by the caller.
    """

    queue: str
    task: str
    minute: float | None
    """Start of the minute (epoch seconds) for per-minute rows; None for sums."""
    succeeded: int = 0
    """Attempts that ended the job `succeeded`."""
    retried: int = 0
    """Failed attempts (errors, timeouts, lost leases) that left attempts to go."""
    dead: int = 0
    """Attempts that ended the job `dead` (exhausted, not retryable, Discard, lost lease)."""
    attempts: int = 0
    """Every finished attempt: succeeded + retried + dead."""
    wait_le: tuple[int, ...] = (0,) * len(WAIT_BUCKETS)
    """Attempts that started at most WAIT_BUCKETS[i] seconds after their run_at (cumulative)."""
    run_seconds: float = 0.0
    """Total run time of the attempts, seconds."""


@dataclass(frozen=True, slots=True)
class StatsQuery:
    since: float
    """Epoch seconds: minutes starting at or after this are read."""
    until: float
    """Epoch seconds: minutes starting before this are read."""
    task: str | None = None
    queue: str | None = None
    per_minute: bool = False
    """One row per minute (a time series) instead of one sum per queue and task."""


@dataclass(frozen=True, slots=True)
class AlertState:
    """Whether one alert is firing, kept in the backend so it fires once per incident."""

    key: str
    firing: bool
    changed_at: float = 0.0
    """Set by the backend (its clock) on every write."""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One operator or admin action to record, in the transaction of the action.

    The backend adds the time (its clock) and the count of what the action changed.
    """

    actor: str
    """Who: e.g. `token:ops#3 (operator)`, `cli:alice@build-1`."""
    source: str
    """From where: the client's address, or `cli`."""
    action: str
    """What: `job.retry`, `job.cancel`, `job.purge`, `queue.pause`, `token.create`, ..."""
    target: str = ""
    """On what: `job:12`, `queue:emails`, `token:5`, `dead jobs`."""
    params: dict[str, Any] = field(default_factory=dict)
    """The action's parameters (filters, role, ...): never a secret."""
    retention: float = 90 * 86400.0
    """Entries older than this many seconds are pruned when this one is written."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    """Epoch seconds, the database's clock."""
    actor: str
    source: str
    action: str
    target: str
    count: int
    """Jobs the action changed (1 or 0 for queue and token actions: changed or not)."""
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: float | None = None
    until: float | None = None
    actor: str | None = None
    """Any part of the actor."""
    action: str | None = None
    before_id: int | None = None
    """Cursor: only entries with a smaller id (lists are newest first)."""
    limit: int = 100


AUDIT_PRUNE_BATCH = 1000
"""Most expired audit entries deleted per audited action."""


# -- roles ------------------------------------------------------------------------
# Each kind of caller is typed with the narrow role it uses; `Backend` is them all.


class JobStore(Protocol):
    """Jobs, for the app (enqueue, get, list) and the worker (fetch to completion)."""

    def job_insert_many(
        self, jobs: Sequence[JobInsert], *, connection: Any = None, gate: SendGate | None = None
    ) -> list[InsertResult]:
        """Insert jobs in one transaction (the caller's, when `connection` is given).

        Raises `SerializationError` or `InvalidOptionError` (nothing written) for a job
        no backend could store alike: see `conveyor.backends.records.check_insert`.
        `gate`: call `gate.sending()` right before the write is sent (see `SendGate`)."""
        ...

    def job_find_client_id(self, client_id: str) -> int | None:
        """The id of the job stored under this client id, if any."""
        ...

    def job_resolve(
        self, jobs: Sequence[JobInsert], *, stop_session: int | None = None
    ) -> list[InsertResult | None]:
        """After an ambiguous insert: each job found by its client id (created), else by
        its idempotency key (not created), else None. `stop_session`: first end that
        database session (the one the insert was sent on), so a write still in flight
        cannot commit after the answer."""
        ...

    def job_fetch(self, params: FetchParams) -> list[JobRecord]:
        """Lease up to `limit` due jobs: stage due scheduled jobs, pick fairly across
        queues (priority, run_at, id within one), mark them running, attempt + 1; record
        the start of the first `params.start` of them."""
        ...

    def job_complete_many(
        self, completions: Sequence[Completion], *, started: Sequence[HeldJob] = ()
    ) -> list[int]:
        """Record attempt outcomes; returns the ids whose lease still matched. In the same
        transaction, record the start of the `started` attempts (see `job_start_many`)."""
        ...

    def job_start_many(self, worker_id: str, jobs: Sequence[HeldJob]) -> None:
        """Record that the attempts of these held jobs started (fenced by lease token).

        Attempts count runs: a rescue counts the attempt of an expired lease only if its
        start was recorded. A job found on a dead worker's hands whose start was never
        recorded gets its attempt back once; the next time it is counted."""
        ...

    def job_heartbeat(
        self, worker_id: str, jobs: Sequence[HeldJob], lease_seconds: float
    ) -> list[int]:
        """Extend the leases still held; returns their ids (a missing id was lost)."""
        ...

    def job_release_many(
        self, worker_id: str, jobs: Sequence[HeldJob], delay: float = 0.0
    ) -> list[int]:
        """Give running jobs back, their attempt not counted: available now (graceful
        shutdown), or scheduled `delay` seconds from now (an open circuit breaker)."""
        ...

    def job_rescue(self, limit: int = 1000) -> list[int]:
        """Recover jobs whose lease expired: a lost attempt that started is recorded as a
        `LeaseExpired` error, and the job is available again, or dead if none are left. A
        job whose start was never recorded gets its attempt back, once; its `LeaseExpired`
        entry says the attempt was not counted (see `job_start_many`)."""
        ...

    def job_get(self, job_id: int) -> JobRecord | None:
        """One job; a stored value that cannot be shown reads degraded, never raises."""
        ...

    def job_list(self, filter: JobFilter) -> list[JobRecord]: ...


class QueueAdmin(Protocol):
    """What operators do to jobs and queues (CLI, API, dashboard) and retention."""

    def job_retry(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int:
        """Move matching dead jobs back to available with a fresh set of attempts.

        `audit` (on this and every operator method): written in the same transaction."""
        ...

    def job_cancel(self, job_id: int, *, audit: AuditRecord | None = None) -> bool:
        """Cancel a job that has not started (scheduled or available)."""
        ...

    def job_delete(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int:
        """Delete matching finished jobs (dead, succeeded, cancelled)."""
        ...

    def job_prune(self, older_than: float, limit: int = 10_000) -> int:
        """Delete succeeded and cancelled jobs finished more than `older_than` seconds ago."""
        ...

    def queue_stats(self) -> list[QueueStats]: ...

    def queue_pause(
        self, queue: str, by: str = "", *, audit: AuditRecord | None = None
    ) -> bool:
        """Stop workers fetching from `queue` (running jobs finish); False if already paused."""
        ...

    def queue_resume(self, queue: str, *, audit: AuditRecord | None = None) -> bool:
        """Let workers fetch from `queue` again; False if it was not paused."""
        ...

    def queue_pause_list(self) -> list[QueuePause]: ...


class Coordinator(Protocol):
    """What processes sharing one database agree on: leaders, workers, wake-ups, time."""

    def leader_elect(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the role `name` for `ttl` seconds; False while another holds it."""
        ...

    def leader_resign(self, name: str, holder: str) -> None:
        """Give the role up at once (if `holder` has it), so another process takes over."""
        ...

    def worker_heartbeat(self, info: WorkerInfo) -> None: ...

    def worker_list(self, alive_within: float) -> list[WorkerInfo]: ...

    def worker_remove(self, worker_id: str) -> None: ...

    def wait_for_work(self, timeout: float) -> None:
        """Block up to `timeout` seconds, returning early when new work may be there."""
        ...

    def now(self) -> float:
        """The database's clock, epoch seconds."""
        ...


class StatsStore(Protocol):
    """Aggregates, throughput and alert states, for insights, SLOs and alerting."""

    def stats_read(self, query: StatsQuery) -> list[JobStats]:
        """Per-minute aggregates (see `JobStats`), summed per queue and task or per minute."""
        ...

    def stats_error_types(
        self, since: float, *, task: str | None = None, limit: int = 5
    ) -> list[tuple[str, int]]:
        """The most frequent error types of attempts that failed since `since`, with counts."""
        ...

    def stats_prune(self, older_than: float) -> int:
        """Delete aggregates of minutes more than `older_than` seconds old."""
        ...

    def job_throughput(self, since: float, bucket_seconds: float) -> list[Throughput]:
        """Succeeded and dead jobs per queue and time bucket, finished at or after `since`."""
        ...

    def alert_list(self) -> list[AlertState]: ...

    def alert_set(self, state: AlertState) -> None: ...


class TokenStore(Protocol):
    """API tokens, stored as hashes."""

    def token_insert(self, token: TokenInsert, *, audit: AuditRecord | None = None) -> int: ...

    def token_list(self) -> list[ApiToken]: ...

    def token_by_hash(self, token_hash: str) -> ApiToken | None: ...

    def token_revoke(self, token_id: int, *, audit: AuditRecord | None = None) -> bool:
        """Revoke a token at once; False if there is no such live token."""
        ...

    def token_touch(self, token_id: int) -> None:
        """Record that the token was just used."""
        ...

    # -- dashboard sessions -------------------------------------------------
    def session_insert(self, session_hash: str, token_id: int, lifetime: float) -> None:
        """Store a session (its SHA-256) made from a token, ending `lifetime` seconds from
        now by the database's clock; sessions that ended meanwhile are deleted."""
        ...

    def session_token(self, session_hash: str) -> ApiToken | None:
        """The token behind a live session: None once the session expired or ended, or
        its token was revoked or expired."""
        ...

    def session_end(self, session_hash: str) -> None:
        """End a session at once (sign-out)."""
        ...

    # -- audit log ------------------------------------------------------------
    def audit_insert(self, record: AuditRecord, count: int = 0) -> int:
        """Record an action that has no backend method of its own (e.g. a limit change)."""
        ...

    def audit_list(self, filter: AuditFilter) -> list[AuditEntry]:
        """Entries newest first."""
        ...


@dataclass(frozen=True, slots=True)
class EventInsert:
    """One operational event to store (see `conveyor.events.OpsEvent`)."""

    kind: str
    subject: str = ""
    actor: str = ""
    details_json: str = "{}"
    at: float | None = None
    """Epoch seconds; None: the backend's clock when the batch is written."""


@dataclass(frozen=True, slots=True)
class EventEntry:
    """One stored operational event."""

    id: int
    at: float
    kind: str
    subject: str
    actor: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventFilter:
    since: float | None = None
    until: float | None = None
    kind: str | None = None
    """A kind (`alert.fired`) or a family (`alert`)."""
    before_id: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """One incident: opened by a page-level alert or by hand, closed when it resolves."""

    id: int
    opened_at: float
    closed_at: float | None
    title: str
    alert_key: str | None
    """The page alert that opened it (`objective:sli:page`); None when opened by hand."""
    opened_by: str
    closed_by: str | None
    details: dict[str, Any]
    """What was known at the opening (the alert's objective, task, burn rates...)."""
    close_details: dict[str, Any]
    """What was known at the closing (the resolving alert, a note)."""


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    type: str
    count: int
    first_at: float
    last_at: float
    message: str
    tasks: tuple[str, ...]


class IncidentStore(Protocol):
    """The durable event log and the incidents."""

    def event_insert_many(self, events: Sequence[EventInsert]) -> int:
        """Store a batch in one statement; returns how many."""
        ...

    def event_list(self, filter: EventFilter) -> list[EventEntry]:
        """Events newest first."""
        ...

    def event_prune(self, older_than: float, limit: int = 10_000) -> int: ...

    def incident_open(
        self, title: str, opened_by: str, *, alert_key: str | None = None,
        details: dict[str, Any] | None = None, at: float | None = None,
    ) -> tuple[int, bool]:
        """Open an incident; for an alert that has an open one, that one.
        Returns (id, whether it is new)."""
        ...

    def incident_close(
        self, incident_id: int, closed_by: str, *, details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> bool:
        """Close an open incident; False when it was closed already (or does not exist)."""
        ...

    def incident_open_for_alert(self, alert_key: str) -> int | None: ...

    def incident_list(
        self, *, open_only: bool = False, before_id: int | None = None, limit: int = 50
    ) -> list[IncidentRecord]: ...

    def incident_get(self, incident_id: int) -> IncidentRecord | None: ...

    def job_key_count(self, task: str, key: str) -> int:
        """Jobs of `task` stored under idempotency key `key`."""
        ...

    def error_summary(self, since: float, until: float, limit: int = 10) -> list[ErrorSummary]:
        """Error types recorded in [since, until), most frequent first."""
        ...


class Backend(JobStore, QueueAdmin, Coordinator, StatsStore, TokenStore, IncidentStore,
              Protocol):
    """What a storage engine must do: every role, plus its schema and lifetime.
    See the module docstring for the rules."""

    url: str

    def migrate(self, *, dry_run: bool = False) -> list[tuple[int, str]]:
        """Apply pending migrations (or, with dry_run, only return them) as (version, sql)."""
        ...

    def schema_check(self) -> None:
        """Raise `SchemaError` with the command to run unless the schema is `SCHEMA_VERSION`."""
        ...

    def close(self) -> None: ...
