"""Flow control around each attempt: shared circuit breakers and retry budgets.

Both keep their state in the database (`backends.base.FlowStore`), so the whole
fleet sees one breaker and one budget per task, whatever the number of worker
processes and hosts.

Circuit breaker (`@app.task(breaker=CircuitBreaker(...))`), one per task::

    closed ──(failure rate over the window)──► open ──(cooldown over)──► half-open
      ▲                                          ▲                          │
      └───────────(the probe succeeded)──────────┴─(the probe failed: cooldown x 2)

- The rate is the fleet's: every worker adds its attempts and failures to the
  task's row, and the write that crosses the threshold opens the breaker (once,
  for everybody: that worker publishes `breaker_opened`).
- Half-open: one probe for the fleet. The first worker to find the cooldown
  over claims the probe in the database (a conditional update); the claim
  expires after `probe_ttl` (the worker's lease), so a worker killed while
  probing delays recovery by at most that, never forever.
- While open (or while the probe is out), the task's jobs are deferred
  (`AttemptResult.deferred`: back to `scheduled`, attempt not counted).
- The hot path stays cheap: a worker caches each row and re-reads it every
  `REFRESH` seconds, together with the successes it counted meanwhile (one
  write per task per refresh, not per attempt). A failure is written at once
  (the answer tells the worker the fleet's state), and while the fleet's
  failure rate is near the threshold (`_suspect`) the worker reads the row
  before each attempt, so it stops at once when another worker opens it.

Retry budget (`RetryBudget`, on by default; `conveyor.worker.budget`): the
same middleware asks it before a retry (attempt 2 or later) and defers the
retry, attempt not counted, when the fleet's budget is spent. A job the open
breaker defers takes nothing from the budget.

A database that does not answer fails open: the cached state decides, and a
retry runs (the worker cannot record its outcome either until the database is
back, and the worker's own backoff handles that).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from conveyor.backends.base import BreakerRow, RetryBudgetUse
from conveyor.errors import BackendError
from conveyor.events import EventBus, EventName, JobEvent
from conveyor.middleware import Attempt, AttemptNext, AttemptResult, Middleware
from conveyor.retry import CircuitBreaker

log = logging.getLogger("conveyor.worker")

State = Literal["closed", "open", "half-open"]

REFRESH = 1.0
"""Seconds a worker trusts its cached breaker state (and holds its counts) for."""


class FlowState(Protocol):
    """The backend calls flow control makes (`backends.base.FlowStore`)."""

    def breaker_list(self, tasks: list[str]) -> list[BreakerRow]: ...
    def breaker_update(
        self, task: str, change: Callable[[BreakerRow], BreakerRow]
    ) -> tuple[BreakerRow, BreakerRow]: ...
    def retry_budget_count(self, task: str, first_attempts: int) -> None: ...
    def retry_budget_take(
        self, task: str, *, first_attempts: int, window: float, ratio: float, floor: int
    ) -> RetryBudgetUse: ...


# -- the state machine, on stored rows (pure: run inside the row's transaction) ---------
def _rolled(row: BreakerRow, window: float) -> BreakerRow:
    """The row with its window moved on to contain `row.now`."""
    elapsed = row.now - row.window_started_at
    if elapsed < window:
        return row
    periods = int(elapsed // window)
    started = row.window_started_at + periods * window
    if periods == 1:
        return dataclasses.replace(
            row, window_started_at=started, prev_attempts=row.attempts,
            prev_failures=row.failures, attempts=0, failures=0,
        )
    return dataclasses.replace(
        row, window_started_at=started, prev_attempts=0, prev_failures=0, attempts=0, failures=0
    )


def window_counts(row: BreakerRow, window: float) -> tuple[float, float]:
    """(attempts, failures) over the last `window` seconds: the current window's plus the
    previous one's, weighed by how much of it is still within (a sliding estimate)."""
    row = _rolled(row, window)
    # Clamped: a transaction that waited for the row may read a clock a little behind
    # the window start another one wrote (PostgreSQL's now() is the transaction's start).
    weight = min(1.0, max(0.0, 1.0 - (row.now - row.window_started_at) / window))
    return (row.attempts + weight * row.prev_attempts,
            row.failures + weight * row.prev_failures)


def _opened(row: BreakerRow, cooldown: float) -> BreakerRow:
    return dataclasses.replace(
        row, state="open", cooldown=cooldown, open_until=row.now + cooldown,
        attempts=0, failures=0, prev_attempts=0, prev_failures=0,
        window_started_at=row.now, probe_holder=None, probe_expires_at=None,
        changed_at=row.now,
    )


def count(row: BreakerRow, policy: CircuitBreaker, attempts: int, failures: int) -> BreakerRow:
    """Add attempts; open the breaker when the fleet's window crosses the policy's rate.
    Outcomes that arrive while it is not closed change nothing (they started before)."""
    if row.state != "closed":
        return row
    row = _rolled(row, policy.window)
    row = dataclasses.replace(
        row, attempts=row.attempts + attempts, failures=row.failures + failures
    )
    total, failed = window_counts(row, policy.window)
    if failures and total >= policy.min_attempts and failed >= policy.failure_rate * total:
        return _opened(row, policy.cooldown)
    return row


def claim_probe(row: BreakerRow, holder: str, ttl: float) -> BreakerRow:
    """Take the fleet's one probe if the cooldown is over and nobody holds a live one."""
    cooled = row.state == "open" and row.open_until is not None and row.now >= row.open_until
    free = row.state == "half-open" and (
        row.probe_holder is None
        or row.probe_expires_at is None
        or row.probe_expires_at <= row.now
    )
    if not (cooled or free):
        return row
    return dataclasses.replace(
        row, state="half-open", probe_holder=holder, probe_expires_at=row.now + ttl,
        changed_at=row.now if cooled else row.changed_at,
    )


def probe_verdict(
    row: BreakerRow, policy: CircuitBreaker, holder: str, failed: bool | None
) -> BreakerRow:
    """The probe's outcome: success closes, failure reopens for twice as long (up to the
    cap), no verdict frees the probe for the next job. A claim that expired (another
    worker probes now) changes nothing."""
    if row.state != "half-open" or row.probe_holder != holder:
        return row
    if failed is None:
        return dataclasses.replace(row, probe_holder=None, probe_expires_at=None)
    if failed:
        return _opened(row, min(max(row.cooldown, policy.cooldown) * 2, policy.max_cooldown))
    return dataclasses.replace(
        row, state="closed", attempts=0, failures=0, prev_attempts=0, prev_failures=0,
        window_started_at=row.now, open_until=None, probe_holder=None, probe_expires_at=None,
        changed_at=row.now,
    )


# -- one worker's view -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Admission:
    wait: float
    """Seconds the job should wait; 0.0 means run it now."""
    probe: str | None = None
    """The probe claim this attempt holds: it decides whether a half-open breaker closes."""


RUN = Admission(0.0)


@dataclass(slots=True)
class _Circuit:
    task: str
    policy: CircuitBreaker
    lock: threading.Lock = field(default_factory=threading.Lock)
    row: BreakerRow | None = None
    read_at: float = float("-inf")
    """Local clock when `row` was read."""
    pending_attempts: int = 0
    pending_failures: int = 0
    probe: str | None = None
    """Our claim, while one of this worker's attempts is the probe."""

    def db_now(self, now: float) -> float:
        assert self.row is not None
        return self.row.now + (now - self.read_at)


class Breakers:
    """The shared circuits of the tasks that have one, as one worker process sees them.

    `store` is set when the worker opens its backend (`attach`)."""

    def __init__(
        self,
        policies: Mapping[str, CircuitBreaker],
        *,
        now: Callable[[], float],
        worker_id: str = "",
        events: EventBus | None = None,
        probe_ttl: float = 30.0,
        refresh: float = REFRESH,
    ) -> None:
        self._circuits = {task: _Circuit(task, policy) for task, policy in policies.items()}
        self._now = now
        self._worker_id = worker_id
        self._events = events
        self.probe_ttl = probe_ttl
        self.refresh = refresh
        self.store: FlowState | None = None

    @property
    def has_circuits(self) -> bool:
        """True when some task asked for a breaker."""
        return bool(self._circuits)

    def attach(self, store: FlowState) -> None:
        self.store = store

    def state(self, task: str) -> State:
        """The task's state as the database has it now (closed without a breaker)."""
        circuit = self._circuits.get(task)
        if circuit is None or self.store is None:
            return "closed"
        with circuit.lock:
            self._read(circuit)
            return "closed" if circuit.row is None else circuit.row.state

    def admit(self, attempt: Attempt) -> Admission:
        circuit = self._circuits.get(attempt.task)
        if circuit is None or self.store is None:
            return RUN
        with circuit.lock:
            now = self._now()
            try:
                if circuit.row is None or now - circuit.read_at >= self.refresh:
                    self._flush(circuit, attempt)
                elif circuit.row.state == "closed" and self._suspect(circuit):
                    self._read(circuit)
            except BackendError as exc:
                log.debug("breaker of %s: state not refreshed (%s); the cached one decides",
                          attempt.task, exc)
            row = circuit.row
            if row is None or row.state == "closed":
                return RUN
            db_now = circuit.db_now(now)
            if row.state == "open" and row.open_until is not None and db_now < row.open_until:
                return Admission(max(row.open_until - db_now, 0.001))
            probing = (
                row.state == "half-open" and row.probe_holder is not None
                and row.probe_expires_at is not None and db_now < row.probe_expires_at
            )
            if circuit.probe is not None or probing:
                # A probe is out: the others wait one base cooldown, then ask again.
                return Admission(circuit.policy.cooldown)
            return self._claim(circuit, attempt)

    def record(self, attempt: Attempt, failed: bool | None, *, probe: str | None = None) -> None:
        """Report an attempt: failed (retryable error), succeeded, or None (says nothing)."""
        circuit = self._circuits.get(attempt.task)
        if circuit is None or self.store is None:
            return
        with circuit.lock:
            if probe is not None:
                self._verdict(circuit, attempt, probe, failed)
                return
            if failed is None:
                return
            circuit.pending_attempts += 1
            circuit.pending_failures += failed
            if failed and (circuit.row is None or circuit.row.state == "closed"):
                try:
                    self._flush(circuit, attempt)
                except BackendError as exc:
                    log.debug("breaker of %s: failure not recorded yet (%s)", attempt.task, exc)

    # -- database round trips (called with the circuit's lock held) ----------------------
    def _suspect(self, circuit: _Circuit) -> bool:
        """True when the fleet's failure rate is within half of opening the breaker: then
        every admission reads the row, so none runs after another worker opened it."""
        row = circuit.row
        assert row is not None
        total, failed = window_counts(
            dataclasses.replace(row, now=circuit.db_now(self._now())), circuit.policy.window
        )
        total += circuit.pending_attempts
        failed += circuit.pending_failures
        return failed >= 1 and failed >= circuit.policy.failure_rate * total / 2

    def _read(self, circuit: _Circuit) -> None:
        assert self.store is not None
        read_at = self._now()
        rows = self.store.breaker_list([circuit.task])
        # No row yet: nobody recorded an attempt, so it is closed with empty counts.
        circuit.row = rows[0] if rows else BreakerRow(
            task=circuit.task, state="closed", window_started_at=read_at, attempts=0,
            failures=0, prev_attempts=0, prev_failures=0, cooldown=0.0, open_until=None,
            probe_holder=None, probe_expires_at=None, changed_at=read_at, now=read_at,
        )
        circuit.read_at = read_at

    def _flush(self, circuit: _Circuit, attempt: Attempt) -> None:
        """Add our pending counts to the fleet's (opening the breaker if they cross the
        rate) and read the row back."""
        assert self.store is not None
        attempts, failures = circuit.pending_attempts, circuit.pending_failures
        if not attempts:
            self._read(circuit)
            return
        read_at = self._now()
        before, after = self.store.breaker_update(
            circuit.task, lambda row: count(row, circuit.policy, attempts, failures)
        )
        circuit.pending_attempts -= attempts
        circuit.pending_failures -= failures
        circuit.row, circuit.read_at = after, read_at
        if before.state == "closed" and after.state == "open":
            total, failed = window_counts(before, circuit.policy.window)
            self._changed(attempt, EventName.BREAKER_OPENED, after, (
                f"{failed + failures:.0f} of the last {total + attempts:.0f} attempts across "
                f"the fleet failed within {circuit.policy.window:g}s; its jobs wait "
                f"{after.cooldown:g}s instead of spending attempts, then one runs as a probe"
            ))

    def _claim(self, circuit: _Circuit, attempt: Attempt) -> Admission:
        assert self.store is not None
        holder = f"{self._worker_id}/{uuid.uuid4().hex[:12]}"
        read_at = self._now()
        try:
            before, after = self.store.breaker_update(
                circuit.task, lambda row: claim_probe(row, holder, self.probe_ttl)
            )
        except BackendError as exc:
            log.debug("breaker of %s: probe not claimed (%s)", attempt.task, exc)
            return Admission(circuit.policy.cooldown)
        circuit.row, circuit.read_at = after, read_at
        if after.probe_holder != holder:
            if after.state == "closed":
                return RUN
            if after.state == "open" and after.open_until is not None:
                return Admission(max(after.open_until - after.now, 0.001))
            return Admission(circuit.policy.cooldown)
        circuit.probe = holder
        if before.state == "open":
            self._changed(attempt, EventName.BREAKER_HALF_OPEN, after, (
                f"the {before.cooldown:g}s cooldown is over: job {attempt.id} is the probe "
                f"for the fleet"
            ))
        return Admission(0.0, probe=holder)

    def _verdict(
        self, circuit: _Circuit, attempt: Attempt, holder: str, failed: bool | None
    ) -> None:
        assert self.store is not None
        circuit.probe = None
        read_at = self._now()
        try:
            before, after = self.store.breaker_update(
                circuit.task, lambda row: probe_verdict(row, circuit.policy, holder, failed)
            )
        except BackendError as exc:
            log.warning(
                "worker %s: the probe of task %s could not be recorded (%s); its claim "
                "expires and another job probes", self._worker_id, attempt.task, exc,
            )
            return
        circuit.row, circuit.read_at = after, read_at
        if before.state == after.state:
            return
        if after.state == "closed":
            self._changed(attempt, EventName.BREAKER_CLOSED, after,
                          f"the probe (job {attempt.id}) succeeded")
        elif after.state == "open":
            self._changed(attempt, EventName.BREAKER_OPENED, after, (
                f"the probe (job {attempt.id}) failed; its jobs wait {after.cooldown:g}s, "
                f"then one runs as a probe"
            ))

    def _changed(self, attempt: Attempt, name: EventName, row: BreakerRow, why: str) -> None:
        word = {EventName.BREAKER_OPENED: "opened", EventName.BREAKER_HALF_OPEN: "half-open",
                EventName.BREAKER_CLOSED: "closed"}[name]
        log.warning(
            "worker %s: circuit for task %s %s: %s", self._worker_id, attempt.task, word, why,
            extra={"task": attempt.task, "job_id": attempt.id, "event": str(name)},
        )
        events = self._events
        if events is not None and events.has_observers and events.wants(name):
            events.emit(JobEvent(
                name, attempt.id, attempt.task, attempt.queue, attempt=attempt.attempt,
                worker=self._worker_id, detail=why,
            ))


class RetryGate(Protocol):
    """What the middleware asks of the retry budgets (`conveyor.worker.budget`)."""

    def first_attempt(self, task: str) -> None: ...
    def take(self, attempt: Attempt) -> float: ...


def health(result: AttemptResult) -> bool | None:
    """What an attempt says about the task's dependencies, for its circuit breaker:
    True for a failure the retry policy would retry, False for a success, None for
    anything that says nothing (RetryAfter, Discard, dont_retry, unknown task)."""
    if result.kind == "ok":
        return False
    if result.kind == "error" and result.retryable:
        return True
    return None


class BreakerMiddleware(Middleware):
    """Defers the jobs of a task whose circuit is open, and retries past the task's
    retry budget; records each attempt's health."""

    def __init__(self, breakers: Breakers, budgets: RetryGate | None = None) -> None:
        self.breakers = breakers
        self.budgets = budgets

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        admission = self.breakers.admit(attempt)
        if admission.wait > 0:
            return AttemptResult.deferred(admission.wait)
        budgets = self.budgets
        if budgets is not None:
            if attempt.attempt > 1:
                wait = budgets.take(attempt)
                if wait > 0:
                    if admission.probe is not None:  # give the probe to another job
                        self.breakers.record(attempt, None, probe=admission.probe)
                    return AttemptResult.deferred(wait)
            else:
                budgets.first_attempt(attempt.task)
        result = call_next()
        if result.kind != "deferred":
            self.breakers.record(attempt, health(result), probe=admission.probe)
        elif admission.probe is not None:
            self.breakers.record(attempt, None, probe=admission.probe)
        return result
