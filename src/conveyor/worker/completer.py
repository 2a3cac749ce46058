"""The completer thread: writes finished attempts in batches (one transaction each), and
with them the start marks of prefetched jobs a slot took up, so a rescue counts only
attempts that started (one more statement per batch, none per job). Durable waits
starting (`ctx.sleep`: the wait step and the give-back) are batched the same way, one
transaction for all those queued."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.backends.base import Completion, HeldJob, StepSave
from conveyor.errors import BackendError
from conveyor.events import EventBus, EventName, attempt_events
from conveyor.middleware import AttemptResult
from conveyor.retry import RetryPolicy
from conveyor.types import JobRecord
from conveyor.worker.deps import WorkerBackend
from conveyor.worker.executor import to_completion
from conveyor.worker.held import HeldJobs
from conveyor.worker.stats import WorkerStats

log = logging.getLogger("conveyor.worker")

BATCH = 500
"""Most completions written in one transaction."""


@dataclass(frozen=True, slots=True)
class Suspension:
    """A durable wait to record with the give-back of its job."""

    record: JobRecord
    delay: float
    step: StepSave


_Item = tuple[Completion, JobRecord] | HeldJob | Suspension | None


class Completer:
    """Turns attempt results into completions and writes them, batched, in its thread."""

    def __init__(
        self,
        *,
        worker_id: str,
        backend: WorkerBackend,
        held: HeldJobs,
        events: EventBus,
        stats: WorkerStats,
        retry_policy: Callable[[str], RetryPolicy],
        now: Callable[[], float],
        hard_stop: threading.Event,
        backend_failed: Callable[[BackendError, int], None],
        suspended: Callable[[float], None] = lambda delay: None,
    ) -> None:
        self.worker_id = worker_id
        self.backend = backend
        self.held = held
        self.events = events
        self.stats = stats
        self.retry_policy = retry_policy
        """The retry policy of a task, by name."""
        self.now = now
        self.hard_stop = hard_stop
        self.backend_failed = backend_failed
        self.suspended = suspended
        """Told the delay of each job given back to wait."""
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()

    def submit(self, record: JobRecord, result: AttemptResult) -> None:
        """Queue the completion of an attempt that is still ours (thread-safe)."""
        completion = to_completion(
            record, result, worker_id=self.worker_id,
            retry=self.retry_policy(record.task), now=self.now(),
        )
        self._queue.put((completion, record))

    def submit_start(self, job: HeldJob) -> None:
        """Queue the start mark of an attempt the fetch did not mark (thread-safe)."""
        self._queue.put(job)

    def submit_suspension(self, suspension: Suspension) -> None:
        """Queue a durable wait of an attempt that is still ours (thread-safe)."""
        self._queue.put(suspension)

    def close(self) -> None:
        """Write what is queued, then end the thread."""
        self._queue.put(None)

    def main(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                return
            batch: list[tuple[Completion, JobRecord]] = []
            starts: list[HeldJob] = []
            waits: list[Suspension] = []
            item: _Item = first
            while item is not None:
                if isinstance(item, HeldJob):
                    starts.append(item)
                elif isinstance(item, Suspension):
                    waits.append(item)
                else:
                    batch.append(item)
                if len(batch) + len(starts) + len(waits) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
            if waits:
                self.write_waits(waits)
            self.write(batch, starts, given_back=waits)

    def write_waits(self, waits: list[Suspension]) -> None:
        """Record the waits and give their jobs back, in one transaction."""
        failures = 0
        while True:
            try:
                applied = set(self.backend.job_suspend_many(self.worker_id, [
                    (HeldJob(w.record.id, w.record.lease_token), w.delay, w.step)
                    for w in waits
                ]))
                break
            except BackendError as exc:
                failures += 1
                if self.hard_stop.is_set() and failures > 3:
                    # Still running in the database: its lease expires and it is
                    # rescued (the wait runs again from the top).
                    log.error("worker %s: dropping %d waits: %s", self.worker_id,
                              len(waits), exc)
                    applied = set()
                    break
                self.backend_failed(exc, failures)
        self.held.completed((w.record for w in waits), durations=False)
        for wait in waits:
            if wait.record.id in applied:
                self.stats.deferred += 1
                self.suspended(wait.delay)
            else:
                self.stats.lost += 1
                log.warning(
                    "worker %s: job %s: the lease had moved on, its wait %r was not recorded",
                    self.worker_id, wait.record.id, wait.step.name,
                    extra={"job_id": wait.record.id, "task": wait.record.task},
                )

    def write(
        self, batch: list[tuple[Completion, JobRecord]], starts: list[HeldJob] | None = None,
        *, given_back: list[Suspension] | None = None,
    ) -> None:
        # A job whose completion (or give-back) is in this batch needs no start mark.
        if starts:
            ended = {(c.job_id, c.lease_token) for c, _ in batch}
            ended.update((w.record.id, w.record.lease_token) for w in given_back or ())
            starts = [s for s in starts if (s.id, s.lease_token) not in ended]
        failures = 0
        while True:
            try:
                if batch:
                    applied = set(self.backend.job_complete_many(
                        [c for c, _ in batch], started=starts or ()
                    ))
                elif starts:
                    self.backend.job_start_many(self.worker_id, starts)
                    return
                else:
                    return
                break
            except BackendError as exc:
                failures += 1
                # Keep trying while we may still hold the leases; fencing makes a late
                # write harmless, and giving up would only make the job run again.
                if self.hard_stop.is_set() and failures > 3:
                    log.error(
                        "worker %s: dropping %d completions: %s", self.worker_id, len(batch), exc
                    )
                    applied = set()
                    break
                self.backend_failed(exc, failures)
        events = self.events
        observed = events.has_observers
        # Successes are most jobs: skip building their events when no observer wants them.
        successes_observed = observed and events.wants(EventName.SUCCEEDED)
        durations = self.held.completed((r for _, r in batch), durations=observed)
        stats = self.stats
        for completion, record in batch:
            applied_here = completion.job_id in applied
            if observed and (
                successes_observed or not applied_here or completion.outcome != "succeeded"
            ):
                events.emit_all(attempt_events(
                    completion, record, self.worker_id, durations.get(record.id),
                    applied=applied_here,
                ))
            if not applied_here:
                stats.lost += 1
                log.warning(
                    "worker %s: job %s attempt %d: the lease had moved on, outcome not recorded",
                    self.worker_id, record.id, record.attempt,
                    extra={"job_id": record.id, "task": record.task, "attempt": record.attempt},
                )
                continue
            if completion.outcome == "succeeded":
                stats.succeeded += 1
            elif completion.outcome == "retry":
                stats.retried += 1
            else:
                stats.dead += 1


__all__ = ["BATCH", "Completer", "Suspension"]
