"""The worker: fetch loop, slots, leases and heartbeats, completions, shutdown.

Threads of one worker process:

- main: fetches as many jobs as there are free slots plus a prefetch (one
  round trip), hands them to the slots, runs maintenance (rescue expired
  leases, enqueue due periodic jobs, prune) every poll interval, and waits for
  work or a free slot in between. The prefetched jobs wait in the worker,
  leased and heartbeated like running ones, so a slot that finishes starts its
  next job at once instead of after a round trip; once they are half gone the
  worker fetches again, so fetches carry many jobs each. By default the
  prefetch holds about PREFETCH_HORIZON seconds of work (from the average
  attempt time): many short jobs, few or none long ones, so no job waits long
  behind another in a busy worker while an idle one could run it. A job's
  timeout counts from its start;
- slots (`concurrency` of them): each runs one attempt at a time, in the
  thread, on the shared event loop (async tasks), or in its own child process
  (`pool="process"`), unless the task's circuit breaker is open, in which case
  the job goes back to `scheduled` for later, its attempt not counted;
- completer: writes finished attempts in batches (one transaction per batch),
  and with them the start marks of prefetched jobs a slot took up (the fetch
  marks the jobs it hands to idle slots), so a rescue counts only attempts
  that started;
- heartbeat: extends the leases of every held job, records the worker's own
  liveness, and enforces soft timeouts.

Shutdown (SIGTERM/SIGINT or `stop()`): stop fetching, let running attempts
finish for up to `grace` seconds, release what is still running back to
`available` (not counted as an attempt), flush completions, exit 0. A second
signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import Completion, FetchParams, HeldJob, WorkerInfo
from conveyor.clock import SystemClock
from conveyor.errors import BackendError, ConfigurationError, ConveyorError, TaskTimeout
from conveyor.events import EventName, attempt_events, started_event
from conveyor.observability import tracing
from conveyor.scheduler import CronScheduler
from conveyor.types import JobRecord
from conveyor.worker.breaker import Breakers
from conveyor.worker.child import ChildProcess
from conveyor.worker.executor import Outcome, failure, run_attempt, to_completion, with_timeout

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")

POOLS = ("thread", "process")
PRUNE_BATCH = 2_000
"""Finished jobs deleted per prune statement: small enough to keep each write short."""
PREFETCH_HORIZON = 0.05
"""Seconds of work (at the average attempt time) the adaptive prefetch holds."""
PREFETCH_MAX_FACTOR = 8
"""The adaptive prefetch holds at most this many jobs per slot."""
PRUNE_BUDGET = 0.5
"""Seconds one prune pass may spend before the worker goes back to fetching."""


@dataclass(slots=True)
class _Held:
    record: JobRecord
    deadline: float | None
    """monotonic time after which a thread attempt is failed as timed out (soft timeout);
    set when a slot starts the attempt."""
    started: float = 0.0
    """monotonic time the slot started the attempt (0: not started)."""
    abandoned: bool = False
    """Timed out, lost or released: whatever the attempt returns later is not written."""
    finished: bool = False
    """The attempt returned; its completion is queued for the completer."""
    child: ChildProcess | None = None
    took: float | None = None
    """Seconds the attempt ran, once it returned (for the duration in job events)."""
    start_recorded: bool = False
    """The backend knows the attempt started (attempts count runs): marked by the fetch
    for a job it handed to a free slot, else by the completer once a slot starts it."""


@dataclass(slots=True)
class WorkerStats:
    fetched: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0
    """Completions refused because the lease had moved on (fenced)."""
    released: int = 0
    deferred: int = 0
    """Jobs given back for later because their task's circuit breaker was open."""
    rescued: int = 0
    errors: list[str] = field(default_factory=list)


class Worker:
    """Runs jobs of `app` from `queues` with `concurrency` slots until stopped."""

    def __init__(
        self,
        app: Conveyor,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 8,
        pool: str = "thread",
        burst: bool = False,
        grace: float = 30.0,
        lease: float | None = None,
        poll_interval: float | None = None,
        heartbeat_interval: float | None = None,
        prune_interval: float = 60.0,
        prune_batch: int = PRUNE_BATCH,
        cron: bool | None = None,
        app_path: str | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: float | None = None,
        install_signals: bool = True,
        worker_id: str | None = None,
        prefetch: int | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if pool not in POOLS:
            raise ConfigurationError(f"pool must be one of {POOLS}, got {pool!r}")
        if isinstance(prune_batch, bool) or not isinstance(prune_batch, int) or prune_batch < 1:
            raise ConfigurationError(f"prune_batch must be an int >= 1, got {prune_batch!r}")
        if grace < 0:
            raise ConfigurationError(f"grace must be >= 0 seconds, got {grace!r}")
        if prefetch is not None and (
            isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0
        ):
            raise ConfigurationError(
                f"prefetch must be an int >= 0 (or None: adaptive), got {prefetch!r}"
            )
        for name, limit in (("max_jobs_per_child", max_jobs_per_child),
                            ("max_memory_per_child", max_memory_per_child)):
            if limit is None:
                continue
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
                unit = "jobs" if name == "max_jobs_per_child" else "MB"
                raise ConfigurationError(f"{name} must be a number of {unit} > 0, got {limit!r}")
            if pool != "process":
                raise ConfigurationError(
                    f"{name} replaces the child processes of pool='process'; with "
                    f"pool={pool!r} there are none: use pool='process' or drop {name}"
                )
        if max_jobs_per_child is not None and not isinstance(max_jobs_per_child, int):
            raise ConfigurationError(
                f"max_jobs_per_child must be a whole number of jobs, got {max_jobs_per_child!r}"
            )
        self.app = app
        self.queues = list(queues) if queues else [app.default_queue]
        if not self.queues or len(set(self.queues)) != len(self.queues):
            raise ConfigurationError(f"queues must be distinct names, got {self.queues!r}")
        self.concurrency = concurrency
        self.prefetch = prefetch
        """Jobs fetched beyond the free slots, to start the moment a slot frees up;
        None: adaptive (see PREFETCH_HORIZON)."""
        self._attempt_seconds: float | None = None
        """Moving average of attempt run times (for the adaptive prefetch)."""
        self.pool = pool
        self.burst = burst
        self.grace = grace
        self.lease = lease if lease is not None else app.lease
        self.poll_interval = poll_interval if poll_interval is not None else app.poll_interval
        self.heartbeat_interval = heartbeat_interval or self.lease / 3
        if self.heartbeat_interval >= self.lease:
            raise ConfigurationError(
                f"heartbeat_interval ({self.heartbeat_interval}s) must be shorter than the lease "
                f"({self.lease}s)"
            )
        self.prune_interval = prune_interval
        self.prune_batch = prune_batch
        self.cron = CronScheduler(app) if (not burst if cron is None else cron) else None
        """Enqueues the app's periodic jobs; off by default for burst workers."""
        self.max_jobs_per_child = max_jobs_per_child
        self.max_memory_per_child = max_memory_per_child
        """Megabytes of resident memory past which a process-pool child is replaced."""
        self.install_signals = install_signals
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.app_path = app_path
        if pool == "process":
            from conveyor.app import find_app_path

            self.app_path = app_path or find_app_path(app)
            if not self.app_path:
                raise ConfigurationError(
                    "pool='process' starts child processes that import the app: pass "
                    "app_path='module:app' (the CLI does this for you)"
                )
        self.stats = WorkerStats()
        self._held: dict[int, _Held] = {}
        self._lock = threading.Lock()
        self._busy = 0
        """Jobs handed to the slots and not finished: running plus prefetched."""
        self._running = 0
        self._slot_freed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._hard_stop = threading.Event()
        self._work: queue.SimpleQueue[JobRecord | None] = queue.SimpleQueue()
        # Completions, and start marks (HeldJob) the completer writes with them.
        self._completions: queue.SimpleQueue[tuple[Completion, JobRecord] | HeldJob | None] = (
            queue.SimpleQueue()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._started_at = time.time()
        self._local = threading.local()
        self._backend_down_since: float | None = None
        self.breakers = Breakers(
            {name: t.options.breaker for name, t in app.tasks.items() if t.options.breaker},
            now=(app.clock or SystemClock()).now, worker_id=self.id,
        )
        self._last_rescue = 0.0
        self._last_prune = 0.0
        self._backend_answered = threading.Event()
        """Set by the heartbeat when the backend answers: cuts short a backoff wait."""

    # -- public -----------------------------------------------------------------------
    def stop(self, *, graceful: bool = True) -> None:
        """Ask the worker to stop (thread-safe); a second, or graceful=False, skips grace."""
        if self._stopping.is_set() or not graceful:
            self._hard_stop.set()
        self._stopping.set()
        with self._slot_freed:
            self._slot_freed.notify_all()

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (signal or `stop()`)."""
        return self._stopping.is_set()

    @property
    def running_jobs(self) -> int:
        with self._lock:
            return self._running

    def run(self) -> int:
        """Work until stopped (or idle, with burst). Returns the process exit code (0)."""
        backend = self.app.backend
        backend.schema_check()
        restore = self._install_signal_handlers()
        stop_services = self.app.start_services(self.id)
        self._start_threads()
        log.info(
            "worker %s started: queues=%s concurrency=%d pool=%s lease=%.1fs",
            self.id, ",".join(self.queues), self.concurrency, self.pool, self.lease,
            extra={"worker": self.id},
        )
        try:
            self._loop_until_stopped()
        finally:
            self._shutdown()
            stop_services()
            restore()
        return 0

    # -- main loop --------------------------------------------------------------------
    def _prune(self) -> bool:
        """Delete finished history past retention in short batches; True once none is left."""
        deadline = time.monotonic() + PRUNE_BUDGET
        while self.app.backend.job_prune(self.app.retention, self.prune_batch) >= self.prune_batch:
            if time.monotonic() >= deadline or self._stopping.is_set():
                return False
        return True

    def _maintain(self, every: float) -> None:
        """Rescue expired leases and enqueue due periodic jobs if the last time is `every`
        seconds ago; prune if due."""
        now = time.monotonic()
        if now - self._last_rescue >= every:
            self.stats.rescued += len(self.app.backend.job_rescue())
            if self.cron is not None:
                self.cron.run_due()
            self._last_rescue = now
        if now - self._last_prune >= self.prune_interval:
            caught_up = self._prune()
            # Out of budget with history still waiting: prune again on the next
            # pass, not an interval later, so pruning keeps up with any
            # completion rate while fetches still run between passes.
            self._last_prune = now if caught_up else now - self.prune_interval

    def _loop_until_stopped(self) -> None:
        backend = self.app.backend
        self._last_rescue = 0.0
        self._last_prune = time.monotonic()
        failures = 0
        while not self._stopping.is_set():
            try:
                # Maintenance runs when the worker is about to wait (below), so a
                # wake-up fetches first; only a worker that never waits (saturated)
                # runs it here, once it is overdue.
                self._maintain(every=2 * self.poll_interval)
                with self._slot_freed:
                    free = self._fetchable()
                    if free <= 0:
                        if not self._stopping.is_set():
                            self._slot_freed.wait(self.poll_interval)
                        continue
                    # Start marks: the first `start` jobs go to idle slots at once, so the
                    # fetch records their start; the prefetched rest are marked as they start.
                    start = min(free, max(0, self.concurrency - self._busy))
                jobs = backend.job_fetch(
                    FetchParams(self.id, self.queues, free, self.lease, start=start)
                )
                self._backend_recovered()
                failures = 0
            except BackendError as exc:
                failures += 1
                self._backend_failed(exc, failures)
                continue
            for i, record in enumerate(jobs):
                self._dispatch(record, start_recorded=i < start)
            if len(jobs) == free:
                continue  # there may be more
            if self.burst and not jobs and self._idle():
                log.info("worker %s: queues empty, burst done", self.id)
                return
            try:
                self._maintain(every=self.poll_interval)
                backend.wait_for_work(self.poll_interval)
            except BackendError as exc:
                failures += 1
                self._backend_failed(exc, failures)

    def _fetchable(self) -> int:
        """How many jobs to fetch now (call with the lock held); 0: wait for slots.

        Nothing waits for a slot: fill every free slot and the prefetch. Jobs wait:
        fetch again only once half the prefetch is free, so that each fetch
        carries many jobs, not one per finished job.
        """
        prefetch = self._prefetch()
        free = self.concurrency + prefetch - self._busy
        waiting = self._busy - self._running
        if waiting > 0 and free < max(1, prefetch // 2):
            return 0
        return free

    def _prefetch(self) -> int:
        if self.prefetch is not None:
            return self.prefetch
        average = self._attempt_seconds
        if average is None:  # nothing measured yet
            return self.concurrency
        most = PREFETCH_MAX_FACTOR * self.concurrency
        if average * most <= PREFETCH_HORIZON * self.concurrency:
            return most
        return int(PREFETCH_HORIZON * self.concurrency / average)

    def _idle(self) -> bool:
        with self._lock:
            return self._busy == 0 and not self._held

    def _backend_failed(self, exc: BackendError, failures: int) -> None:
        if self._backend_down_since is None:
            self._backend_down_since = time.monotonic()
            log.error("worker %s: backend unavailable, retrying with backoff: %s", self.id, exc)
        # Full-jitter backoff, capped, so a fleet of workers does not reconnect in step;
        # cut short when the heartbeat (which keeps beating) finds the backend back, so
        # the end of an outage costs a heartbeat interval, not a whole backoff step.
        delay = random.uniform(0, min(10.0, 0.1 * 2 ** min(failures, 10)))
        self._backend_answered.clear()
        deadline = time.monotonic() + delay
        while not self._stopping.is_set() and not self._backend_answered.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._backend_answered.wait(min(left, 0.1))

    def _backend_recovered(self) -> None:
        if self._backend_down_since is not None:
            down = time.monotonic() - self._backend_down_since
            self._backend_down_since = None
            log.warning("worker %s: backend back after %.1fs", self.id, down)

    def _dispatch(self, record: JobRecord, *, start_recorded: bool = False) -> None:
        with self._lock:
            self._held[record.id] = _Held(record, None, start_recorded=start_recorded)
            self._busy += 1
        self.stats.fetched += 1
        self._work.put(record)

    # -- slots ------------------------------------------------------------------------
    def _start_threads(self) -> None:
        if any(t.is_async for t in self.app.tasks.values()) and self.pool == "thread":
            self._loop = asyncio.new_event_loop()
            self._spawn(self._loop.run_forever, "conveyor-asyncio")
        for i in range(self.concurrency):
            self._spawn(self._slot_main, f"conveyor-slot-{i}")
        self._completer = self._spawn(self._completer_main, "conveyor-completer")
        self._heartbeat = self._spawn(self._heartbeat_main, "conveyor-heartbeat")

    def _spawn(self, target: Any, name: str) -> threading.Thread:
        # Daemon threads: a task stuck forever in a thread must not keep the process alive
        # after shutdown has released its job.
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _slot_main(self) -> None:
        child: ChildProcess | None = None
        if self.pool == "process":
            assert self.app_path is not None
            max_memory = (None if self.max_memory_per_child is None
                          else int(self.max_memory_per_child * 2**20))
            child = ChildProcess(
                self.app_path, max_jobs=self.max_jobs_per_child, max_memory=max_memory
            )
        try:
            while True:
                record = self._work.get()
                if record is None:
                    return
                if not self._start(record):
                    continue
                admission = self.breakers.admit(record.task)
                if admission.wait > 0:
                    self._defer(record, admission.wait)
                    continue
                self._record_start(record)  # start mark: attempts count runs
                if self.app.events and self.app.events.wants(EventName.STARTED):
                    self.app.events.emit(started_event(record, self.id))
                if tracing.wants_span(record):
                    outcome = tracing.traced_attempt(self._attempt, record, child, self.id)
                else:
                    outcome = self._attempt(record, child)
                self.breakers.record(record.task, _health(outcome), probe=admission.probe)
                self._finish(record, outcome)
        finally:
            if child is not None:
                child.stop()

    def _start(self, record: JobRecord) -> bool:
        """Claim a slot for a fetched job; False when it must not start: its lease was
        lost while it waited, or the worker is stopping (shutdown releases it)."""
        with self._lock:
            held = self._held.get(record.id)
            lost = held is None or held.abandoned or held.record.lease_token != record.lease_token
            if lost or self._stopping.is_set():
                self._busy -= 1
                if lost and held is not None and held.record.lease_token == record.lease_token:
                    del self._held[record.id]
                self._slot_freed.notify_all()
                return False
            assert held is not None
            self._running += 1
            held.started = time.monotonic()
            if record.timeout is not None and self.pool == "thread":
                held.deadline = time.monotonic() + record.timeout
            return True

    def _record_start(self, record: JobRecord) -> None:
        """Have the completer record that this attempt started, with its next batch,
        unless the fetch already did (a rescue counts only attempts whose start it knows)."""
        with self._lock:
            held = self._held.get(record.id)
            if held is None or held.start_recorded:
                return
            held.start_recorded = True
        self._completions.put(HeldJob(record.id, record.lease_token))

    def _attempt(self, record: JobRecord, child: ChildProcess | None) -> Outcome:
        task = self.app.tasks.get(record.task)
        try:
            if child is not None and task is not None:
                with self._lock:
                    held = self._held.get(record.id)
                    if held is not None:
                        held.child = child
                return child.run(record)
            return run_attempt(task, record, run_coroutine=self._run_coroutine)
        except Exception as exc:  # a bug of ours must not kill the slot
            log.exception("worker %s: internal error running job %s", self.id, record.id)
            return failure(exc)

    def _run_coroutine(self, coro: Any, timeout: float | None) -> Any:
        assert self._loop is not None, "async task without an event loop"
        future: Future[Any] = asyncio.run_coroutine_threadsafe(
            with_timeout(coro, timeout), self._loop
        )
        return future.result()

    def _defer(self, record: JobRecord, wait: float) -> None:
        """Give a job of a task whose circuit is open back for later, attempt not counted."""
        with self._lock:
            held = self._held.get(record.id)
            ours = (
                held is not None
                and not held.abandoned
                and held.record.lease_token == record.lease_token
            )
        failures = 0
        given_back = False
        while ours:
            try:
                self.app.backend.job_release_many(
                    self.id, [HeldJob(record.id, record.lease_token)], delay=wait
                )
                self.stats.deferred += 1
                given_back = True
                break
            except BackendError as exc:
                failures += 1
                if self._stopping.is_set():
                    # Keep holding it: shutdown's release gives it back (attempt not
                    # counted), or its lease expires. No retry loop against a dead backend.
                    break
                self._backend_failed(exc, failures)
        with self._lock:
            held = self._held.get(record.id)
            if (given_back or not ours) and held is not None and (
                held.record.lease_token == record.lease_token
            ):
                del self._held[record.id]
            self._busy -= 1
            self._running -= 1
            self._slot_freed.notify_all()

    def _finish(self, record: JobRecord, outcome: Outcome) -> None:
        with self._lock:
            held = self._held.get(record.id)
            abandoned = (
                held is None or held.abandoned or held.record.lease_token != record.lease_token
            )
            if held is not None and not abandoned:
                held.finished = True
            if held is not None and held.started:
                took = time.monotonic() - held.started
                held.took = took
                average = self._attempt_seconds
                self._attempt_seconds = took if average is None else 0.8 * average + 0.2 * took
            self._busy -= 1
            self._running -= 1
            self._slot_freed.notify_all()
        if abandoned:
            log.warning(
                "worker %s: job %s finished after its attempt was given up (timeout, lost lease "
                "or shutdown); its outcome is not recorded", self.id, record.id,
                extra={"job_id": record.id, "task": record.task},
            )
            return
        self._complete(record, outcome)

    def _complete(self, record: JobRecord, outcome: Outcome) -> None:
        task = self.app.tasks.get(record.task)
        policy = self.app.retry_policy(task) if task is not None else self.app.default_retry
        # The app's clock when it has one (a test's ManualClock), so error times agree
        # with the backend's times.
        now = self.app.clock.now() if self.app.clock is not None else time.time()
        completion = to_completion(record, outcome, worker_id=self.id, retry=policy, now=now)
        self._completions.put((completion, record))

    # -- completer --------------------------------------------------------------------
    def _completer_main(self) -> None:
        backend = self.app.backend
        done = False
        while not done:
            first = self._completions.get()
            if first is None:
                return
            batch: list[tuple[Completion, JobRecord]] = []
            starts: list[HeldJob] = []
            item: tuple[Completion, JobRecord] | HeldJob | None = first
            while item is not None:
                if isinstance(item, HeldJob):
                    starts.append(item)
                else:
                    batch.append(item)
                if len(batch) + len(starts) >= 500:
                    break
                try:
                    item = self._completions.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
            self._write_completions(backend, batch, starts)

    def _write_completions(
        self, backend: Any, batch: list[tuple[Completion, JobRecord]],
        starts: list[HeldJob] | None = None,
    ) -> None:
        # Start marks ride with the batch (one more statement per batch, none per job);
        # a job whose completion is in this batch needs none.
        if starts:
            ended = {(c.job_id, c.lease_token) for c, _ in batch}
            starts = [s for s in starts if (s.id, s.lease_token) not in ended]
        failures = 0
        while True:
            try:
                if batch:
                    applied = set(backend.job_complete_many(
                        [c for c, _ in batch], started=starts or ()
                    ))
                elif starts:
                    backend.job_start_many(self.id, starts)
                    return
                else:
                    return
                break
            except BackendError as exc:
                failures += 1
                # Keep trying while we may still hold the leases; fencing makes a late
                # write harmless, and giving up would only make the job run again.
                if self._hard_stop.is_set() and failures > 3:
                    log.error("worker %s: dropping %d completions: %s", self.id, len(batch), exc)
                    applied = set()
                    break
                self._backend_failed(exc, failures)
        events = self.app.events
        observed = bool(events)
        # Successes are most jobs: skip building their events when no observer wants them.
        successes_observed = observed and events.wants(EventName.SUCCEEDED)
        now = time.monotonic()
        durations: dict[int, float] = {}
        with self._lock:
            for _, record in batch:
                held = self._held.get(record.id)
                if held is not None and held.record.lease_token == record.lease_token:
                    del self._held[record.id]
                    if observed and held.started:
                        durations[record.id] = held.took or now - held.started
        for completion, record in batch:
            applied_here = completion.job_id in applied
            if observed and (
                successes_observed or not applied_here or completion.outcome != "succeeded"
            ):
                events.emit_all(attempt_events(
                    completion, record, self.id, durations.get(record.id),
                    applied=applied_here,
                ))
            if completion.job_id not in applied:
                self.stats.lost += 1
                log.warning(
                    "worker %s: job %s attempt %d: the lease had moved on, outcome not recorded",
                    self.id, record.id, record.attempt,
                    extra={"job_id": record.id, "task": record.task, "attempt": record.attempt},
                )
                continue
            if completion.outcome == "succeeded":
                self.stats.succeeded += 1
            elif completion.outcome == "retry":
                self.stats.retried += 1
            else:
                self.stats.dead += 1
        with self._slot_freed:
            self._slot_freed.notify_all()

    # -- heartbeat --------------------------------------------------------------------
    def _heartbeat_main(self) -> None:
        backend = self.app.backend
        next_beat = 0.0
        tick = min(0.05, self.heartbeat_interval)
        while not self._hard_stop.is_set():
            self._enforce_soft_timeouts()
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat_interval
                try:
                    self._beat(backend)
                except BackendError:
                    pass
                else:
                    self._backend_answered.set()
            if self._stopping.is_set() and self._idle():
                return
            self._hard_stop.wait(tick)

    def _beat(self, backend: Any) -> None:
        with self._lock:
            held = [
                HeldJob(h.record.id, h.record.lease_token)
                for h in self._held.values() if not h.abandoned
            ]
            running = self._running
        if held:
            kept = set(backend.job_heartbeat(self.id, held, self.lease))
            lost = [h for h in held if h.id not in kept]
            if lost:
                with self._lock:
                    for h in lost:
                        entry = self._held.get(h.id)
                        if entry is not None and entry.record.lease_token == h.lease_token:
                            entry.abandoned = True
                            # A finished attempt waiting for the completer is resolved there.
                log.warning(
                    "worker %s: lost the lease of job(s) %s (paused too long or cut off); "
                    "another worker may run them", self.id, [h.id for h in lost],
                )
        backend.worker_heartbeat(
            WorkerInfo(
                id=self.id, hostname=socket.gethostname(), pid=os.getpid(),
                queues=self.queues, concurrency=self.concurrency, started_at=self._started_at,
                running=running, meta={"pool": self.pool},
            )
        )

    def _enforce_soft_timeouts(self) -> None:
        now = time.monotonic()
        expired: list[JobRecord] = []
        with self._lock:
            for held in self._held.values():
                if held.deadline is not None and not held.abandoned and now >= held.deadline:
                    held.abandoned = True
                    expired.append(held.record)
        for record in expired:
            log.warning(
                "worker %s: job %s exceeded its %ss timeout; the attempt is failed, but a thread "
                "cannot be stopped: it keeps its slot until it returns (use pool='process' for "
                "hard timeouts)", self.id, record.id, record.timeout,
                extra={"job_id": record.id, "task": record.task},
            )
            self._complete(record, failure(TaskTimeout(
                f"attempt exceeded the task's timeout of {record.timeout}s (soft timeout: the "
                "thread could not be stopped)"
            )))

    # -- shutdown ---------------------------------------------------------------------
    def _shutdown(self) -> None:
        backend = self.app.backend
        deadline = time.monotonic() + (0.0 if self._hard_stop.is_set() else self.grace)
        with self._slot_freed:
            while self._running > 0 and not self._hard_stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._slot_freed.wait(min(left, 0.1))
        # Whatever still runs, or was fetched and never started, goes back to the queue
        # now, instead of waiting for its lease.
        with self._lock:
            running = [h for h in self._held.values() if not h.abandoned and not h.finished]
            for h in running:
                h.abandoned = True
        if running:
            try:
                released = backend.job_release_many(
                    self.id, [HeldJob(h.record.id, h.record.lease_token) for h in running]
                )
                self.stats.released += len(released)
                log.warning(
                    "worker %s: grace period over, released %d running job(s): %s",
                    self.id, len(released), released,
                )
            except ConveyorError as exc:
                log.error(
                    "worker %s: could not release %d job(s) (%s); their leases will expire",
                    self.id, len(running), exc,
                )
            for h in running:
                if h.child is not None:
                    h.child.kill()
        for _ in range(self.concurrency):
            self._work.put(None)
        self._completions.put(None)
        self._completer.join(timeout=max(5.0, self.grace))
        self._hard_stop.set()
        self._heartbeat.join(timeout=5.0)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        with contextlib.suppress(ConveyorError):
            backend.worker_remove(self.id)
        log.info(
            "worker %s stopped: %d succeeded, %d retried, %d dead, %d released",
            self.id, self.stats.succeeded, self.stats.retried, self.stats.dead,
            self.stats.released,
        )

    def _install_signal_handlers(self) -> Any:
        if not self.install_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handle(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._stopping.is_set():
                log.warning("worker %s: second %s, stopping now", self.id, name)
            else:
                log.warning(
                    "worker %s: %s, finishing running jobs (up to %.0fs; again to skip)",
                    self.id, name, self.grace,
                )
            self.stop()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def _health(outcome: Outcome) -> bool | None:
    """What an attempt says about the task's dependencies, for its circuit breaker:
    True for a failure the retry policy would retry, False for a success, None for
    anything that says nothing (RetryAfter, Discard, dont_retry, unknown task)."""
    if outcome.kind == "ok":
        return False
    if outcome.kind == "error" and outcome.retryable:
        return True
    return None
