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

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from conveyor.errors import NotStoredError
from conveyor.limits import LimitSpec
from conveyor.types import JobRecord, JobState

SCHEMA_VERSION = 19
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
    limit_name: str | None = None
    """The flow-control limit the job waits for (docs/flow-control.md); None: none."""
    limit_key: str | None = None
    """The key within `limit_name` ('' for none); None exactly when limit_name is."""
    client_id: str | None = None
    """Unique id chosen by the enqueuing client (a uuid), kept unique by the database:
    after an ambiguous failure the client looks the job up by it, and a forward
    retried from the spool never stores the job twice."""


class SendGate:
    """Between a caller that waits for a write with a deadline and the code doing it.

    The backend calls `sending()` right before it sends the write (after it has a
    working connection); the caller (or the `Watchdog`, at the deadline) calls
    `close()`. The two are serialized: either the write was sent before the close
    (the outcome is unknown until looked up by client id) or it never will be
    (`sending` raises `NotStoredError`), so "not sent" is certain.

    A write done in the caller's own thread (no hand-off) is cut at the deadline by
    the `Watchdog`: the backend `attach`es how to abort what it is waiting on (shut
    the connection's socket) and calls `finish()` before it gives the connection
    back, after which the abort can no longer fire.
    """

    __slots__ = ("_abort", "_closed", "_finished", "_lock", "allowance", "deadline", "sent",
                 "session")

    def __init__(self, deadline: float | None = None, allowance: float = 0.0) -> None:
        self.deadline = deadline
        """`time.monotonic()` after which the caller no longer waits: a backend that
        waits for a lock (SQLite) or a connection waits no longer than this."""
        self.allowance = allowance
        """Seconds added to the deadline once the write is sent: the time the database
        may take to store a large batch (a busy server still answering is not an
        unreachable one)."""
        self._lock = threading.Lock()
        self._closed = False
        self._finished = False
        self._abort: Callable[[], None] | None = None
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
            if self.deadline is not None:
                self.deadline += self.allowance

    @property
    def closed(self) -> bool:
        """True once the caller stopped waiting: a write not yet started need not start."""
        return self._closed

    def close(self) -> bool:
        """Refuse any later send; True if the write was already sent."""
        with self._lock:
            self._closed = True
            return self.sent

    def attach(self, abort: Callable[[], None]) -> None:
        """How to cut the wait on the connection about to be used (at the deadline).
        If the deadline already passed, it is cut at once."""
        with self._lock:
            self._abort = abort
            late = self._closed
        if late:
            self.expire()

    def finish(self) -> None:
        """The write is over (answered or failed): no abort from now on."""
        with self._lock:
            self._finished = True
            self._abort = None

    def expire(self) -> None:
        """The deadline passed: refuse a later send and cut a wait still in progress."""
        with self._lock:
            self._closed = True
            if self._abort is not None and not self._finished:
                # a best effort on a dying connection
                with contextlib.suppress(Exception):
                    self._abort()


class Watchdog:
    """One thread that expires the gates of writes done in their caller's thread.

    Cheaper than handing each write to another thread (which costs a thread switch
    each way): a call registers its gate (a dict insert) and removes it when done;
    the thread looks every `tick` seconds while any write is in progress, and parks
    when there has been none for a second. A deadline so fires at most `tick` late.
    """

    def __init__(self, tick: float = 0.02) -> None:
        self.tick = tick
        self._active: dict[int, SendGate] = {}
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, gate: SendGate) -> None:
        if self._pid != os.getpid():
            # A forked child: its parent's writes (and their sockets) are not its own.
            with self._lock:
                if self._pid != os.getpid():
                    self._active = {}
                    self._wake = threading.Event()
                    self._thread = None
                    self._pid = os.getpid()
        self._active[id(gate)] = gate
        if not self._wake.is_set():
            self._start()

    def done(self, gate: SendGate) -> None:
        self._active.pop(id(gate), None)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-deadlines", daemon=True
                )
                self._thread.start()
            self._wake.set()

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            self._wake.wait()
            time.sleep(self.tick)
            now = time.monotonic()
            gates = list(self._active.values())
            if gates:
                idle_since = now
            elif now - idle_since > 1.0:
                self._wake.clear()
                if self._active:  # a watch() raced the clear: keep going
                    self._wake.set()
                continue
            for gate in gates:
                if gate.deadline is not None and gate.deadline <= now:
                    self._active.pop(id(gate), None)
                    gate.expire()


WATCHDOG = Watchdog()
"""The process's one deadline thread (a forked child starts its own on first use)."""


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
    in_workflow: bool = False
    """The job is a workflow node: its end may release or cancel the nodes that wait
    for it, in the same transaction (plain jobs skip that work)."""


PENDING_RUN_AT = 253_402_128_000.0
"""9999-12-30T00:00:00Z (the latest run_at allowed): the run_at of a workflow node
waiting for its parents. It is 'scheduled' so far ahead that nothing stages or
fetches it; the completion of its last parent makes it available (the workflow
queries name the same instant)."""

RunsWhen = Literal["succeeded", "finished", "failed"]
"""When a workflow node runs: every parent succeeded (a parent that did not cancels
it), every parent finished whatever the outcome, or every parent finished and one
did not succeed (else it is cancelled)."""
Inputs = Literal["none", "previous", "all"]
"""What a node receives from its parents before its own arguments: nothing, the one
parent's result (a chain link), or the list of its parents' results in order (a chord)."""


@dataclass(frozen=True, slots=True)
class NodeInsert:
    """How one job of a workflow depends on others (indices into `WorkflowInsert.jobs`)."""

    name: str
    parents: Sequence[int] = ()
    runs_when: RunsWhen = "succeeded"
    inputs: Inputs = "none"


@dataclass(frozen=True, slots=True)
class WorkflowInsert:
    """A whole workflow to insert in one transaction: jobs with no parents due as
    given, the others waiting (run_at `PENDING_RUN_AT`). The graph is already checked
    (no cycle, parents exist)."""

    id: str
    name: str
    jobs: Sequence[JobInsert]
    nodes: Sequence[NodeInsert]


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    id: str
    name: str
    created_at: float
    cancelled_at: float | None


@dataclass(frozen=True, slots=True)
class WorkflowNode:
    job_id: int
    name: str
    task: str
    queue: str
    state: JobState
    waiting: int
    """Parents not yet finished; a 'scheduled' node with waiting > 0 is pending."""
    failed: int
    """Parents that finished without succeeding."""
    runs_when: str
    inputs: str
    priority: int
    attempt: int
    max_attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def pending(self) -> bool:
        """Waiting for its parents (stored as 'scheduled' at `PENDING_RUN_AT`)."""
        return self.state == JobState.SCHEDULED and self.waiting > 0


@dataclass(frozen=True, slots=True)
class WorkflowEdge:
    parent_id: int
    child_id: int
    position: int
    resolved: bool


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


RUN_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0)
"""Upper bounds (seconds) of the run-time buckets kept in the per-minute aggregates
(columns `run_le_*`), from which the dashboard reads run-time percentiles."""


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
    run_le: tuple[int, ...] = (0,) * len(RUN_BUCKETS)
    """Attempts that ran at most RUN_BUCKETS[i] seconds (cumulative)."""


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
class OperatorRetry:
    """An operator's retry of one dead job: where in its history a fresh set of attempts began."""

    at: float
    """Epoch seconds, the database's clock."""
    actor: str
    """Who (as in the audit log); empty when the retry was not made through `Operations`."""
    after_errors: int
    """How many failed attempts the job's error history held at the retry."""


@dataclass(frozen=True, slots=True)
class SpoolReport:
    """What one host's spool forwarder delivered in a batch the database confirmed."""

    host: str
    path: str
    """The spool folder on that host."""
    forwarded: int
    """Jobs of this batch now in the database (added to the host's total)."""
    depth: int
    """Jobs still in that spool after the batch."""
    oldest_spooled_at: float | None
    """Epoch seconds (the host's clock) when the oldest job still spooled was written."""


@dataclass(frozen=True, slots=True)
class SpoolHost:
    """One host's spool as its forwarder last reported it."""

    host: str
    path: str
    forwarded: int
    depth: int
    oldest_spooled_at: float | None
    first_forward_at: float
    reported_at: float


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
        self, jobs: Sequence[JobInsert], *, stop_session: int | None = None,
        deadline: float | None = None,
    ) -> list[InsertResult | None]:
        """After an ambiguous insert: each job found by its client id (created), else by
        its idempotency key (not created), else None. `stop_session`: first end that
        database session (the one the insert was sent on), so a write still in flight
        cannot commit after the answer. `deadline` (`time.monotonic()`): give up
        (`BackendUnavailable`) rather than wait on the network past it."""
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
        """Move matching dead jobs back to available with a fresh set of attempts, and
        mark each in `job_retries` (by `audit.actor`).

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

    def job_vacuum(self, min_dead: int) -> bool:
        """Reclaim the job table's dead row versions once there are at least `min_dead`
        (PostgreSQL: VACUUM, whether or not autovacuum runs); True if it ran. Called by
        the maintenance leader so the fetch never walks a growing trail of dead entries."""
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

    def job_retries(self, job_id: int) -> list[OperatorRetry]:
        """The operator retries of one job (marked by `job_retry`), oldest first."""
        ...


class WorkflowStore(Protocol):
    """Workflows: nodes and edges beside the jobs (see `WorkflowInsert`)."""

    def workflow_insert(
        self, workflow: WorkflowInsert, *, connection: Any = None
    ) -> list[InsertResult]:
        """Insert the workflow, its jobs, nodes and edges in one transaction (the
        caller's, when `connection` is given); one result per job, in order."""
        ...

    def workflow_get(self, workflow_id: str) -> WorkflowRecord | None: ...

    def workflow_list(self, limit: int = 100) -> list[WorkflowRecord]:
        """Newest first."""
        ...

    def workflow_nodes(self, workflow_id: str) -> list[WorkflowNode]: ...

    def workflow_edges(self, workflow_id: str) -> list[WorkflowEdge]: ...

    def workflow_inputs(self, job_id: int) -> list[Any] | None:
        """What the node `job_id` receives before its own arguments (its parents'
        results: `[result]` for a chain link, `[[results...]]` for a chord), or None
        when it is not a node that takes its parents' results."""
        ...

    def workflow_cancel(
        self, workflow_id: str, *, audit: AuditRecord | None = None
    ) -> int | None:
        """Cancel every node that has not started; how many, or None if there is no
        such workflow. A node cancelled so never starts afterwards."""
        ...


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


@dataclass(frozen=True, slots=True)
class BreakerRow:
    """A task's shared circuit breaker as stored (times: the database's epoch seconds)."""

    task: str
    state: Literal["closed", "open", "half-open"]
    window_started_at: float
    attempts: int
    """Attempts recorded in the current window (since `window_started_at`)."""
    failures: int
    prev_attempts: int
    """Attempts of the window before (the sliding rate weighs them by how much of
    that window still overlaps the last `window` seconds)."""
    prev_failures: int
    cooldown: float
    """Seconds of the current (or last) open period."""
    open_until: float | None
    probe_holder: str | None
    """The worker whose attempt is the half-open probe, until `probe_expires_at`."""
    probe_expires_at: float | None
    changed_at: float
    """When the state last changed."""
    now: float
    """The database's clock when the row was read."""


@dataclass(frozen=True, slots=True)
class RetryBudgetUse:
    """The retry budget's window of one task, as a `retry_budget_take` left it."""

    allowed: bool
    """True: one retry was taken from the budget (count it as started)."""
    first_attempts: int
    retries: int
    """Retries started within the window, the one just taken included."""


class FlowStore(Protocol):
    """Shared flow-control state: circuit breakers and retry budgets (see
    `conveyor.worker.breaker`). Each change is one transaction, so the fleet
    agrees: one probe at a time, no retry past the budget."""

    def breaker_list(self, tasks: Sequence[str]) -> list[BreakerRow]:
        """The stored breakers of these tasks (a task without a row is closed)."""
        ...

    def breaker_update(
        self, task: str, change: Callable[[BreakerRow], BreakerRow]
    ) -> tuple[BreakerRow, BreakerRow]:
        """Lock the task's breaker (created closed if missing), store `change(row)`;
        (before, after). `change` runs inside the transaction: keep it pure and quick."""
        ...

    def retry_budget_count(self, task: str, first_attempts: int) -> None:
        """Add first attempts started to the task's count of the current second."""
        ...

    def retry_budget_take(
        self, task: str, *, first_attempts: int, window: float, ratio: float, floor: int
    ) -> RetryBudgetUse:
        """Add `first_attempts`, then take one retry if the window's retries stay within
        `ratio` x its first attempts + `floor`; atomic across the fleet."""
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

    def spool_report(self, report: SpoolReport) -> None:
        """Record a batch a host's spool forwarder delivered (see `SpoolReport`)."""
        ...

    def spool_hosts(self, limit: int = 100) -> list[SpoolHost]:
        """Every host's spool as last reported, most recent first."""
        ...


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
class StepRecord:
    """One recorded step of a job (see `conveyor.steps`)."""

    name: str
    args_digest: str
    status: Literal["done", "waiting", "signalled"]
    """done: finished, `result_json` holds its value; waiting: a durable wait until
    `wake_at`; signalled: a signal came while the job was still running."""
    result_json: str | None
    wake_at: float | None
    attempt: int
    """The job's attempt that recorded it."""
    tries: int
    """How many times the step's function was called before it finished."""
    started_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class StepSave:
    """A step to record for a running job, fenced by its lease token."""

    job_id: int
    lease_token: int
    name: str
    args_digest: str
    status: Literal["done", "waiting"]
    result_json: str | None = None
    wake_in: float | None = None
    """Seconds from the database's now until a wait ends."""
    tries: int = 1
    took: float = 0.0
    """Seconds the step ran (its start is recorded as now minus this)."""


@dataclass(frozen=True, slots=True)
class JobContextRecord:
    """What a job reported about itself, and an operator's cancel request."""

    progress: float | None = None
    progress_message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    updated_at: float | None = None
    cancel_requested_at: float | None = None
    cancel_grace: float | None = None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A job this worker runs that an operator asked to cancel."""

    job_id: int
    lease_token: int
    age: float
    """Seconds since the request."""
    grace: float
    """Seconds the job has to stop by itself before it is cancelled hard."""


class StepStore(Protocol):
    """Durable steps, waits, signals, progress and cancel requests of jobs."""

    def step_list(self, job_id: int) -> list[StepRecord]: ...

    def step_save(self, step: StepSave) -> bool:
        """Record a step; False when the lease moved on (nothing written), or the step
        was already finished or signalled."""
        ...

    def job_suspend_many(
        self, worker_id: str, waits: Sequence[tuple[HeldJob, float, StepSave]]
    ) -> list[int]:
        """Durable waits starting, in one transaction: for each (job, delay, step), record
        the wait `step` and give the job back for `delay` seconds, its attempt not counted
        (as `job_release_many`). Returns the ids given back; a job whose lease moved on
        is missing, and nothing of it was written."""
        ...

    def job_signal(self, job_id: int, name: str, payload_json: str) -> str | None:
        """Deliver a signal to a job waiting for `name`: the new status of its wait
        ("done": the job was given back to wait and is woken; "signalled": it is still
        running and is due again as soon as it gives its slot back); None when the job
        does not wait for that signal."""
        ...

    def job_context(self, job_id: int) -> JobContextRecord | None: ...

    def job_report(
        self, job_id: int, lease_token: int, *, progress: float | None = None,
        message: str | None = None, set_progress: bool = False,
        metadata_json: str | None = None,
    ) -> bool | None:
        """Store progress (with `set_progress`) and/or metadata of a running job, fenced;
        returns whether a cancel was requested, None when the lease moved on."""
        ...

    def job_cancel_request(
        self, job_id: int, grace: float, *, audit: AuditRecord | None = None
    ) -> bool:
        """Ask a running job to stop within `grace` seconds; False when it is not running."""
        ...

    def job_cancel_watch(self, worker_id: str, job_ids: Sequence[int]) -> list[CancelRequest]:
        """Of `job_ids` (run by `worker_id`), those an operator asked to cancel."""
        ...

    def job_cancel_running(self, job_id: int, lease_token: int) -> bool:
        """Mark a running job cancelled, fenced by its lease token."""
        ...


@dataclass(frozen=True, slots=True)
class LimitState:
    """A limit's numbers and what it holds now (see docs/flow-control.md)."""

    name: str
    rate: float | None
    burst: float | None
    concurrency: int | None
    key_rate: float | None
    key_burst: float | None
    key_concurrency: int | None
    queue: str | None
    overridden: bool
    """An operator set the numbers: declarations in code do not change them."""
    tokens: float | None
    """Tokens in the bucket now (None: no rate)."""
    running: int
    """Jobs of the limit running under a live lease."""
    waiting: int
    """Jobs of the limit `available`, waiting to start."""
    paused_for: float
    """Seconds left of a pause (RetryAfter(limit=...)); 0: not paused."""
    paused_reason: str | None


@dataclass(frozen=True, slots=True)
class KeyWait:
    """Where one waiting job stands in its limit (for explaining its wait)."""

    running: int
    """Jobs of its key running now."""
    ahead_in_limit: int
    ahead_in_key: int
    key_paused_for: float


@dataclass(frozen=True, slots=True)
class LimitNumbers:
    """What an operator sets (`conveyor limits set`): all of a limit's numbers."""

    rate: float | None
    burst: float | None
    concurrency: int | None
    key_rate: float | None
    key_burst: float | None
    key_concurrency: int | None


class LimitStore(Protocol):
    """Flow-control limits: declared by apps, changed by operators, paused by tasks.

    The fetch enforces them (`JobStore.job_fetch`)."""

    def limit_declare(self, specs: Sequence[LimitSpec]) -> None:
        """Create the limits, or take the declared numbers unless an operator set them."""
        ...

    def limit_list(self, name: str | None = None) -> list[LimitState]: ...

    def limit_set(
        self, name: str, numbers: LimitNumbers, *, audit: AuditRecord | None = None
    ) -> bool:
        """Set every number of limit `name` (sticky); False when there is no such limit."""
        ...

    def limit_reset(self, name: str, *, audit: AuditRecord | None = None) -> bool:
        """Let the declaration in code set the numbers again."""
        ...

    def limit_pause(self, name: str, key: str | None, seconds: float, reason: str) -> bool:
        """Start nothing of the limit (or of one key) for `seconds`, fleet-wide."""
        ...

    def limit_key_wait(self, job: JobRecord) -> KeyWait | None:
        """Where a limited job stands; None for a job without a limit."""
        ...

    def limits_waiting(self) -> float | None:
        """Seconds after which a limit may admit a job that this process's last fetch
        left waiting (a token refills, a slot frees); None: no limited job waited."""
        ...

    def prefetch_start_within(self, limit_name: str) -> float | None:
        """Seconds after its fetch by which a prefetched job of this limit must start
        (a limit with a rate counted it as starting within them); None: any time."""
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


class Backend(
    JobStore, QueueAdmin, Coordinator, StatsStore, TokenStore, WorkflowStore, FlowStore,
    StepStore, LimitStore, IncidentStore, Protocol,
):
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
