"""The jobs one worker holds, from fetch to completion, and the fencing check.

A job is held from the fetch that leased it until its completion is written
(or it is released, deferred, or its lease is found lost). Every decision that
depends on "is this lease still mine" is made here, by `_mine`: the same job
id and `lease_token` as the record the caller holds, and not abandoned (timed
out, found lost by a heartbeat, released or given back). Pure logic: no
database, no threads beyond its own lock; the worker's threads call it.

Each held job carries the monotonic time by which its lease surely still runs
in the database (`lease_deadline`): counted from when the fetch (or the last
heartbeat that renewed it) was *sent*, so it never runs later than the
database's own expiry. A prefetched job whose deadline has passed is never
started: the worker may have been paused (SIGSTOP, a long GC, a frozen VM)
while another worker rescued it; it is given back instead (`start` says
`EXPIRED`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from conveyor.backends.base import HeldJob
from conveyor.types import JobRecord


class Killable(Protocol):
    def kill(self) -> None: ...


@dataclass(slots=True)
class Held:
    record: JobRecord
    lease_deadline: float
    """Monotonic time up to which the lease surely still holds (fetch or last renewal
    sent + lease seconds)."""
    timeout_at: float | None = None
    """Monotonic time after which a thread attempt is failed as timed out (soft timeout);
    set when a slot starts the attempt."""
    started: float = 0.0
    """Monotonic time the slot started the attempt (0: not started, i.e. prefetched)."""
    abandoned: bool = False
    """Timed out, lost or released: whatever the attempt returns later is not written."""
    giving_back: bool = False
    """Being deferred (breaker) or released: a heartbeat that misses it lost nothing."""
    finished: bool = False
    """The attempt returned; its completion is queued for the completer."""
    child: Killable | None = None
    took: float | None = None
    """Seconds the attempt ran, once it returned (for the duration in job events)."""
    cancelled: bool = False
    """Cancelled hard by an operator (`take_for_cancel`): dropped when the attempt returns."""
    start_recorded: bool = False
    """The backend knows the attempt started (attempts count runs): marked by the fetch
    for a job it handed to a free slot, else by the completer once a slot starts it."""
    start_by: float = float("inf")
    """Monotonic time after which a prefetched job of a rate limit must not start: its
    limit counted it as starting within that span (`PREFETCH_START_WITHIN`)."""


class Start(Enum):
    RUN = "run"
    """Start the attempt."""
    SKIP = "skip"
    """Do not start it: its lease was lost, or the worker is stopping (shutdown releases it)."""
    EXPIRED = "expired"
    """Do not start it: its lease deadline passed; give it back (`forget` afterwards)."""
    LATE = "late"
    """Do not start it: a prefetched job of a rate limit waited past its `start_by`;
    give it back (`forget` afterwards), its lease still holds."""


@dataclass(frozen=True, slots=True)
class ShutdownRelease:
    running: list[Held]
    """Attempts that started and did not return within the grace period."""
    prefetched: list[Held]
    """Jobs fetched but never started."""


class HeldJobs:
    """The jobs held by one worker (thread-safe)."""

    def __init__(
        self,
        *,
        lease: float,
        soft_timeouts: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.soft_timeouts = soft_timeouts
        """Enforce `record.timeout` here (thread pool); a process pool kills its children."""
        self._clock = clock
        self._jobs: dict[int, Held] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        """Notified when a slot frees up, a job is dropped, or a batch is completed."""
        self.busy = 0
        """Jobs handed to the slots and not finished: running plus prefetched."""
        self.running = 0
        self.attempt_seconds: float | None = None
        """Moving average of attempt run times (for the adaptive prefetch)."""

    # -- the fencing check: the only place it is written ------------------------------
    def _mine(self, record: JobRecord) -> Held | None:
        held = self._jobs.get(record.id)
        if held is None or held.abandoned or held.record.lease_token != record.lease_token:
            return None
        return held

    def _same_lease(self, job_id: int, lease_token: int) -> Held | None:
        """The entry of this lease, abandoned or not (to drop it); None if replaced."""
        held = self._jobs.get(job_id)
        if held is None or held.record.lease_token != lease_token:
            return None
        return held

    # -- fetch loop ---------------------------------------------------------------------
    def claimed(
        self, records: Sequence[JobRecord], sent_at: float, *, start_recorded: int = 0,
        start_within: Callable[[str], float | None] | None = None,
    ) -> None:
        """Jobs a fetch sent at monotonic `sent_at` leased; each is now prefetched. The
        first `start_recorded` go to idle slots, and the fetch recorded their start.
        `start_within(limit)`: the seconds of `sent_at` within which the others that fall
        under that limit must start (before their lease, so surely within it of their
        lease), or None for no bound."""
        deadline = sent_at + self.lease
        with self.lock:
            for i, record in enumerate(records):
                start_by = float("inf")
                if i >= start_recorded and record.limit_name is not None and start_within:
                    within = start_within(record.limit_name)
                    if within is not None:
                        start_by = sent_at + within
                self._jobs[record.id] = Held(
                    record, deadline, start_recorded=i < start_recorded, start_by=start_by,
                )
            self.busy += len(records)

    def mark_started(self, record: JobRecord) -> bool:
        """True when the backend must still be told this attempt started (once)."""
        with self.lock:
            held = self._mine(record)
            if held is None or held.start_recorded:
                return False
            held.start_recorded = True
            return True

    def counts(self) -> tuple[int, int]:
        """(busy, running); call with `lock` held."""
        return self.busy, self.running

    def awaiting_completion(self) -> int:
        """Held jobs no slot holds any more: finished attempts whose completion is not
        written yet (and jobs being given back); call with `lock` held."""
        return len(self._jobs) - self.busy

    def idle(self) -> bool:
        with self.lock:
            return self.busy == 0 and not self._jobs

    def is_mine(self, record: JobRecord) -> bool:
        with self.lock:
            return self._mine(record) is not None

    # -- slots ----------------------------------------------------------------------------
    def start(self, record: JobRecord, *, stopping: bool) -> Start:
        """Claim a slot for a fetched job, unless it must not start (see `Start`)."""
        now = self._clock()
        with self.lock:
            held = self._mine(record)
            if held is None or stopping or now >= held.lease_deadline:
                self.busy -= 1
                self.changed.notify_all()
                if held is None:
                    stale = self._same_lease(record.id, record.lease_token)
                    if stale is not None:
                        del self._jobs[record.id]
                    return Start.SKIP
                if stopping:
                    return Start.SKIP  # still held: shutdown gives it back
                held.abandoned = held.giving_back = True
                return Start.EXPIRED
            if now >= held.start_by:
                self.busy -= 1
                self.changed.notify_all()
                held.abandoned = held.giving_back = True
                return Start.LATE
            self.running += 1
            held.started = now
            if record.timeout is not None and self.soft_timeouts:
                held.timeout_at = now + record.timeout
            return Start.RUN

    def set_child(self, record: JobRecord, child: Killable) -> None:
        with self.lock:
            held = self._mine(record)
            if held is not None:
                held.child = child

    def forget(self, record: JobRecord) -> None:
        """Drop a job this worker gave back (or failed to: its lease then expires)."""
        with self.lock:
            if self._same_lease(record.id, record.lease_token) is not None:
                del self._jobs[record.id]
            self.changed.notify_all()

    def begin_deferral(self, record: JobRecord) -> bool:
        """About to give a started job back for later; False if its lease is not ours."""
        with self.lock:
            held = self._mine(record)
            if held is None:
                return False
            held.giving_back = True
            return True

    def end_deferral(self, record: JobRecord, *, dropped: bool) -> None:
        """The slot is free again; `dropped`: the job is no longer held (given back, or
        it was not ours); else it stays held for shutdown's release."""
        with self.lock:
            held = self._same_lease(record.id, record.lease_token)
            if held is not None:
                if dropped:
                    del self._jobs[record.id]
                else:
                    held.giving_back = False
            self.busy -= 1
            self.running -= 1
            self.changed.notify_all()

    def finished(self, record: JobRecord) -> bool:
        """The attempt returned; True when its outcome is to be written (still ours)."""
        now = self._clock()
        with self.lock:
            held = self._mine(record)
            if held is not None:
                held.finished = True
            entry = self._same_lease(record.id, record.lease_token)
            if entry is not None and entry.started:
                took = now - entry.started
                entry.took = took
                average = self.attempt_seconds
                self.attempt_seconds = took if average is None else 0.8 * average + 0.2 * took
            self.busy -= 1
            self.running -= 1
            self.changed.notify_all()
            return held is not None

    # -- completer ------------------------------------------------------------------------
    def completed(self, records: Iterable[JobRecord], *, durations: bool) -> dict[int, float]:
        """The completions of `records` are written (or refused): stop holding them.
        Returns how long each attempt ran, when `durations` is asked for."""
        now = self._clock()
        took: dict[int, float] = {}
        with self.lock:
            for record in records:
                held = self._same_lease(record.id, record.lease_token)
                if held is None:
                    continue
                del self._jobs[record.id]
                if durations and held.started:
                    took[record.id] = held.took or now - held.started
            self.changed.notify_all()
        return took

    # -- heartbeat ------------------------------------------------------------------------
    def snapshot(self) -> tuple[list[HeldJob], int]:
        """The leases to renew (every held job not abandoned) and the running count."""
        with self.lock:
            jobs = [
                HeldJob(h.record.id, h.record.lease_token)
                for h in self._jobs.values() if not h.abandoned
            ]
            return jobs, self.running

    def renewed(self, sent: Sequence[HeldJob], kept: Iterable[int], sent_at: float) -> list[
        JobRecord
    ]:
        """A heartbeat sent at `sent_at` for `sent` renewed `kept`: move their deadlines.
        Returns the jobs whose lease was really lost and are now abandoned: held, same
        lease, not finished (a finished one is resolved by the completer, which may have
        written it between the snapshot and the heartbeat) and not being given back."""
        kept_ids = set(kept)
        deadline = sent_at + self.lease
        lost: list[JobRecord] = []
        with self.lock:
            for job in sent:
                held = self._same_lease(job.id, job.lease_token)
                if held is None:
                    continue  # completed or dropped since the snapshot: nothing lost
                if job.id in kept_ids:
                    held.lease_deadline = max(held.lease_deadline, deadline)
                elif not (held.abandoned or held.finished or held.giving_back):
                    held.abandoned = True
                    lost.append(held.record)
        return lost

    def timed_out(self) -> list[JobRecord]:
        """Running attempts past their soft timeout, now abandoned."""
        now = self._clock()
        expired: list[JobRecord] = []
        with self.lock:
            for held in self._jobs.values():
                if held.timeout_at is not None and not held.abandoned and now >= held.timeout_at:
                    held.abandoned = True
                    expired.append(held.record)
        return expired

    def take_for_cancel(self, job_id: int, lease_token: int) -> Held | None:
        """A running attempt an operator cancelled whose grace ran out: abandoned (its
        outcome is not written), returned so its child can be killed; None when it is not
        ours or already finished."""
        with self.lock:
            held = self._same_lease(job_id, lease_token)
            if held is None or held.abandoned or held.finished or not held.started:
                return None
            held.abandoned = held.cancelled = True
            return held

    def forget_cancelled(self, record: JobRecord) -> bool:
        """Drop a job cancelled hard once its attempt returned; False if it was not."""
        with self.lock:
            held = self._same_lease(record.id, record.lease_token)
            if held is None or not held.cancelled:
                return False
            del self._jobs[record.id]
            self.changed.notify_all()
            return True

    # -- shutdown ---------------------------------------------------------------------------
    def take_for_shutdown(self) -> ShutdownRelease:
        """Abandon what is still ours and unfinished, to give it back."""
        running: list[Held] = []
        prefetched: list[Held] = []
        with self.lock:
            for held in self._jobs.values():
                if held.abandoned or held.finished:
                    continue
                held.abandoned = True
                (running if held.started else prefetched).append(held)
        return ShutdownRelease(running, prefetched)


__all__ = ["Held", "HeldJobs", "Killable", "ShutdownRelease", "Start"]
