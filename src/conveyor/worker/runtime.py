"""The worker: fetch loop, slots and shutdown; the rest in their own modules.

Threads of one worker process:

- main: fetches as many jobs as there are free slots plus a prefetch (one
  round trip), hands them to the slots, runs maintenance (`maintenance`: on
  the elected leader only, rescue expired leases, enqueue due periodic jobs,
  prune) every poll interval, and waits for work or a free slot in between.
  The prefetched jobs wait in the worker, leased and heartbeated like running
  ones, so a slot that finishes starts its next job at once instead of after a
  round trip; once they are half gone the worker fetches again, so fetches
  carry many jobs each. By default the prefetch holds about PREFETCH_HORIZON
  seconds of work (from the average attempt time): many short jobs, few or
  none long ones, so no job waits long behind another in a busy worker while
  an idle one could run it. A job's timeout counts from its start. A
  prefetched job whose lease may have run out by the worker's own clock (it
  was paused longer than the lease) is given back, never started (`held`);
- slots (`concurrency` of them): each runs one attempt at a time, in the
  thread, on the shared event loop (async tasks), or in its own child process
  (`pool="process"`), through the attempt middleware (the built-in flow
  control: shared circuit breaker and retry budget; tracing; then the app's):
  a middleware may defer the job (back to `scheduled` for later, its attempt
  not counted);
- completer (`completer`): writes finished attempts in batches (one
  transaction per batch);
- heartbeat (`heartbeat`): extends the leases of every held job, records the
  worker's own liveness, and enforces soft timeouts.

Which jobs the worker holds, and whether a lease is still its own, is decided
in one place: `held.HeldJobs`.

Shutdown (SIGTERM/SIGINT or `stop()`): stop fetching, let running attempts
finish for up to `grace` seconds, release what is still running back to
`available` (not counted as an attempt), give back prefetched jobs that never
started, flush completions, resign the maintenance role, exit 0. A second
signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import queue
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from types import FrameType
from typing import Any

from conveyor import redaction
from conveyor.backends.base import FetchParams, HeldJob, StepSave
from conveyor.errors import BackendError, ConveyorError
from conveyor.events import EventName, JobEvent, OpsEvent, started_event
from conveyor.middleware import (
    MAX_DEFER,
    Attempt,
    AttemptResult,
    Middleware,
    run_attempt_chain,
)
from conveyor.observability import tracing
from conveyor.types import JobRecord
from conveyor.worker.breaker import BreakerMiddleware, Breakers
from conveyor.worker.budget import RetryBudgets
from conveyor.worker.child import ChildProcess
from conveyor.worker.completer import Completer, Suspension
from conveyor.worker.deps import WorkerApp, WorkerDeps
from conveyor.worker.executor import CANCELLED_TYPE, run_attempt, with_timeout
from conveyor.worker.heartbeat import Heartbeat
from conveyor.worker.held import HeldJobs, Start
from conveyor.worker.maintenance import Maintenance
from conveyor.worker.settings import POOLS, PRUNE_BATCH, WorkerSettings
from conveyor.worker.stats import WorkerStats
from conveyor.worker.wakes import Wakes
from conveyor.workflow import WorkflowInputs, in_workflow

log = logging.getLogger("conveyor.worker")

PREFETCH_HORIZON = 0.05
"""Seconds of work (at the average attempt time) the adaptive prefetch holds."""
PREFETCH_MAX_FACTOR = 8
"""The adaptive prefetch holds at most this many jobs per slot."""


SLOT_WAIT = 0.05
"""A worker told to ask again within this many seconds (a concurrency limit or a
contended one holds its jobs) waits for one of its own slots to free instead of
for a notification; another process's freed slot is seen when the wait ends."""

class Worker:
    """Runs jobs of `app` from `queues` with `concurrency` slots until stopped."""

    def __init__(
        self,
        app: WorkerApp,
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
        settings = WorkerSettings.build(
            default_queue=app.default_queue, default_lease=app.lease,
            default_poll_interval=app.poll_interval, find_app_path=app,
            queues=queues, concurrency=concurrency, pool=pool, burst=burst, grace=grace,
            lease=lease, poll_interval=poll_interval, heartbeat_interval=heartbeat_interval,
            prune_interval=prune_interval, prune_batch=prune_batch, cron=cron,
            app_path=app_path, max_jobs_per_child=max_jobs_per_child,
            max_memory_per_child=max_memory_per_child, install_signals=install_signals,
            worker_id=worker_id, prefetch=prefetch,
        )
        self._setup(settings, WorkerDeps.from_app(app, cron=settings.cron))

    @classmethod
    def from_deps(cls, settings: WorkerSettings, deps: WorkerDeps) -> Worker:
        """A worker built from its narrow dependencies (no app)."""
        worker = cls.__new__(cls)
        worker._setup(settings, deps)
        return worker

    def _setup(self, settings: WorkerSettings, deps: WorkerDeps) -> None:
        self.settings = settings
        self.deps = deps
        self.id = settings.worker_id
        self.queues = list(settings.queues)
        self.concurrency = settings.concurrency
        self.pool = settings.pool
        self.burst = settings.burst
        self.grace = settings.grace
        self.lease = settings.lease
        self.poll_interval = settings.poll_interval
        self.heartbeat_interval = settings.heartbeat_interval
        self.prefetch = settings.prefetch
        """Jobs fetched beyond the free slots, to start the moment a slot frees up;
        None: adaptive (see PREFETCH_HORIZON)."""
        self.app_path = settings.app_path
        self.stats = WorkerStats()
        self.held = HeldJobs(lease=settings.lease, soft_timeouts=settings.pool == "thread")
        self._stopping = threading.Event()
        self._hard_stop = threading.Event()
        self._work: queue.SimpleQueue[JobRecord | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._started_at = time.time()
        self._backend_down_since: float | None = None
        self.breakers = Breakers(
            {name: t.options.breaker for name, t in deps.tasks.items() if t.options.breaker},
            now=deps.now, worker_id=self.id, events=deps.events, probe_ttl=settings.lease,
        )
        budgets = {name: deps.retry_budget(t) for name, t in deps.tasks.items()}
        self.retry_budgets = RetryBudgets(
            {name: b for name, b in budgets.items() if b is not None},
            now=deps.now, worker_id=self.id, events=deps.events,
        )
        self._backend_answered = threading.Event()
        """Set by the heartbeat when the backend answers: cuts short a backoff wait."""
        self._wakes = Wakes()
        """When the jobs this worker gave back to wait come due: an idle worker fetches
        then rather than a poll interval later."""

    # -- public -----------------------------------------------------------------------
    def stop(self, *, graceful: bool = True) -> None:
        """Ask the worker to stop (thread-safe); a second, or graceful=False, skips grace."""
        if self._stopping.is_set() or not graceful:
            self._hard_stop.set()
        self._stopping.set()
        with self.held.changed:
            self.held.changed.notify_all()

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (signal or `stop()`)."""
        return self._stopping.is_set()

    @property
    def running_jobs(self) -> int:
        with self.held.lock:
            return self.held.running

    def run(self) -> int:
        """Work until stopped (or idle, with burst). Returns the process exit code (0)."""
        deps = self.deps
        backend = self.backend = deps.open_backend()
        backend.schema_check()
        self.breakers.attach(backend)
        self.retry_budgets.attach(backend)
        restore = self._install_signal_handlers()
        stop_services = deps.start_services(self.id)
        self.completer = Completer(
            worker_id=self.id, backend=backend, held=self.held, events=deps.events,
            stats=self.stats, retry_policy=lambda name: deps.retry_policy(deps.tasks.get(name)),
            now=deps.now, hard_stop=self._hard_stop, backend_failed=self._backend_failed,
            suspended=self._wakes.add,
        )
        self.heartbeat = Heartbeat(
            settings=self.settings, backend=backend, held=self.held,
            started_at=self._started_at, complete=self.completer.submit,
            stopping=self._stopping, hard_stop=self._hard_stop,
            answered=self._backend_answered,
            finished=lambda: self.stats.succeeded + self.stats.retried + self.stats.dead,
            publish=deps.events.publish,
        )
        self.maintenance = Maintenance(
            settings=self.settings, backend=backend, retention=deps.retention, cron=deps.cron,
            stats=self.stats, stopping=self._stopping, publish=deps.events.publish,
        )
        self._workflow_inputs = WorkflowInputs(backend.workflow_inputs)
        self._middleware = self._attempt_middleware(traced=True)
        self._middleware_untraced = self._attempt_middleware(traced=False)
        self._start_threads()
        deps.events.publish(OpsEvent("worker.started", self.id, {
            "queues": self.queues, "concurrency": self.concurrency, "pool": self.pool,
            "host": socket.gethostname(), "pid": os.getpid()}))
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

    def _attempt_middleware(self, *, traced: bool) -> list[Middleware]:
        """Built in first (the breaker, then tracing), then the app's; only those that
        can do something, so a plain worker calls the attempt directly."""
        chain: list[Middleware] = []
        if self.breakers.has_circuits or self.retry_budgets.has_budgets:
            chain.append(BreakerMiddleware(
                self.breakers, self.retry_budgets if self.retry_budgets.has_budgets else None
            ))
        if traced and tracing.ENABLED:
            chain.append(tracing.TracingMiddleware())
        return chain + list(self.deps.middleware)

    # -- main loop --------------------------------------------------------------------
    def _loop_until_stopped(self) -> None:
        backend = self.backend
        held = self.held
        failures = 0
        while not self._stopping.is_set():
            try:
                # Maintenance runs when the worker is about to wait (below), so a
                # wake-up fetches first; only a worker that never waits (saturated)
                # runs it here, once it is overdue.
                self.maintenance.run(every=2 * self.poll_interval)
                with held.changed:
                    free = self._fetchable()
                    if free <= 0:
                        if not self._stopping.is_set():
                            held.changed.wait(self.poll_interval)
                        continue
                    # Start marks: the first `start` jobs go to idle slots at once, so the
                    # fetch records their start; the prefetched rest are marked as they start.
                    start = min(free, max(0, self.concurrency - held.counts()[0]))
                sent_at = time.monotonic()
                jobs = backend.job_fetch(
                    FetchParams(self.id, self.queues, free, self.lease, start=start)
                )
                self._backend_recovered()
                failures = 0
            except BackendError as exc:
                failures += 1
                self._backend_failed(exc, failures)
                continue
            if jobs:
                held.claimed(jobs, sent_at, start_recorded=start,
                             start_within=backend.prefetch_start_within)
                self.stats.fetched += len(jobs)
                for record in jobs:
                    self._work.put(record)
            if len(jobs) == free:
                continue  # there may be more
            if 0 < start <= len(jobs) and backend.limits_waiting() is not None:
                continue  # every free slot took a limited job: fetch as soon as one frees
            if self.burst and not jobs and held.idle() and backend.limits_waiting() is None:
                log.info("worker %s: queues empty, burst done", self.id)
                return
            try:
                self.maintenance.run(every=self.poll_interval)
                # Jobs wait for a limit: ask again when a token or a slot may be free
                # (a completion elsewhere wakes nobody), not after a whole poll interval.
                limited = backend.limits_waiting()
                if limited is not None and limited <= SLOT_WAIT:
                    # Bound by a concurrency limit: a slot this worker frees is the one
                    # most likely to admit the next job, so its completion wakes us.
                    with held.changed:
                        held.changed.wait(limited)
                    continue
                backend.wait_for_work(self._wakes.wait(
                    self.poll_interval if limited is None else min(self.poll_interval, limited)
                ))
            except BackendError as exc:
                failures += 1
                self._backend_failed(exc, failures)

    def _fetchable(self) -> int:
        """How many jobs to fetch now (call with the lock held); 0: wait for slots.

        Nothing waits for a slot: fill every free slot and the prefetch. Jobs wait:
        fetch again only once half the prefetch is free, so that each fetch
        carries many jobs, not one per finished job.
        """
        busy, running = self.held.counts()
        if (self.backend.limits_waiting() is not None
                and busy + self.held.awaiting_completion() >= self.concurrency):
            # Limited jobs wait and go only to free slots: fetch when one frees up
            # (prefetching unlimited jobs meanwhile would only delay that). A slot
            # frees for a limit once its completion is written: asking before that
            # finds the limit still full, and holds it from the other workers.
            return 0
        prefetch = self._prefetch()
        # A finished attempt stays held (and heartbeated) until the completer has
        # written it. When the database writes completions slower than the slots
        # finish attempts (a loaded server, a long vacuum), fetching on would grow
        # that backlog without bound, and with it every heartbeat, until leases run
        # out. Wait for the completer instead (a written batch wakes this loop).
        if self.held.awaiting_completion() >= self.concurrency + prefetch:
            return 0
        free = self.concurrency + prefetch - busy
        waiting = busy - running
        if waiting > 0 and free < max(1, prefetch // 2):
            return 0
        return free

    def _prefetch(self) -> int:
        if self.prefetch is not None:
            return self.prefetch
        average = self.held.attempt_seconds
        if average is None:  # nothing measured yet
            return self.concurrency
        most = PREFETCH_MAX_FACTOR * self.concurrency
        if average * most <= PREFETCH_HORIZON * self.concurrency:
            return most
        return int(PREFETCH_HORIZON * self.concurrency / average)

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

    # -- slots ------------------------------------------------------------------------
    def _start_threads(self) -> None:
        if any(t.is_async for t in self.deps.tasks.values()) and self.pool == "thread":
            self._loop = asyncio.new_event_loop()
            self._spawn(self._loop.run_forever, "conveyor-asyncio")
        for i in range(self.concurrency):
            self._spawn(self._slot_main, f"conveyor-slot-{i}")
        self._completer = self._spawn(self.completer.main, "conveyor-completer")
        self._spawn(self._watch_cancels, "conveyor-cancel")
        self._heartbeat = self._spawn(self.heartbeat.main, "conveyor-heartbeat")

    def _spawn(self, target: Callable[[], object], name: str) -> threading.Thread:
        # Daemon threads: a task stuck forever in a thread must not keep the process alive
        # after shutdown has released its job.
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _slot_main(self) -> None:
        child: ChildProcess | None = None
        settings = self.settings
        if settings.pool == "process":
            assert settings.app_path is not None
            max_memory = (None if settings.max_memory_per_child is None
                          else int(settings.max_memory_per_child * 2**20))
            child = ChildProcess(
                settings.app_path, max_jobs=settings.max_jobs_per_child, max_memory=max_memory
            )
        try:
            while True:
                record = self._work.get()
                if record is None:
                    return
                verdict = self.held.start(record, stopping=self._stopping.is_set())
                if verdict is Start.EXPIRED:
                    self._give_back_expired(record)
                    continue
                if verdict is Start.LATE:
                    self._give_back_late(record)
                    continue
                if verdict is not Start.RUN:
                    continue
                result = self._run_middleware(record, child)
                if result.kind == "deferred":
                    if result.wait_step is not None:
                        self._suspend(record, result.defer, result.wait_step)
                    else:
                        self._defer(record, result.defer)
                    continue
                if result.kind == "error" and result.error_type == CANCELLED_TYPE:
                    self._cancelled(record)
                    continue
                self._finish(record, result)
        finally:
            if child is not None:
                child.stop()

    def _run_middleware(self, record: JobRecord, child: ChildProcess | None) -> AttemptResult:
        # Most attempts start no span: skip the tracing middleware (and building an
        # Attempt when nothing else wraps it) for them.
        middleware = (
            self._middleware if tracing.wants_span(record) else self._middleware_untraced
        )
        if in_workflow(record.tags):
            # Outermost: a workflow node's parents' results go first in its arguments,
            # read at each attempt (plain jobs skip it).
            middleware = [self._workflow_inputs, *middleware]
        ran = [record]

        def attempt(current: Attempt | None = None) -> AttemptResult:
            if self.held.mark_started(record):  # attempts count runs: tell the backend
                self.completer.submit_start(HeldJob(record.id, record.lease_token))
            events = self.deps.events
            if events.has_observers and events.wants(EventName.STARTED):
                events.emit(started_event(record, self.id))
            if current is not None and (
                current.args != tuple(record.args) or dict(current.kwargs) != record.kwargs
            ):  # a middleware passed other arguments on (decryption does)
                ran[0] = replace(record, args=list(current.args), kwargs=dict(current.kwargs))
            return self._attempt(ran[0], child)

        if not middleware:
            result = attempt()
        else:
            try:
                result = run_attempt_chain(middleware, Attempt.of(record, self.id), attempt)
            except Exception as exc:
                log.exception(
                    "worker %s: a middleware raised around job %s; the attempt is failed",
                    self.id, record.id, extra={"job_id": record.id, "task": record.task},
                )
                result = AttemptResult.failed(exc)
        return scrubbed(result, ran[0])

    def _attempt(self, record: JobRecord, child: ChildProcess | None) -> AttemptResult:
        task = self.deps.tasks.get(record.task)
        try:
            if child is not None and task is not None:
                self.held.set_child(record, child)
                return child.run(record)
            return run_attempt(task, record, run_coroutine=self._run_coroutine,
                               context_store=self.backend)
        except Exception as exc:  # a bug of ours must not kill the slot
            log.exception("worker %s: internal error running job %s", self.id, record.id)
            return AttemptResult.failed(exc)

    def _run_coroutine(self, coro: Any, timeout: float | None) -> Any:
        assert self._loop is not None, "async task without an event loop"
        future: Future[Any] = asyncio.run_coroutine_threadsafe(
            with_timeout(coro, timeout), self._loop
        )
        return future.result()

    def _give_back_expired(self, record: JobRecord) -> None:
        """A prefetched job whose lease deadline passed before it started (the worker was
        paused): another worker may have it now. Give it back, attempt not counted (a
        no-op if it was rescued: the token moved on), never start it."""
        log.warning(
            "worker %s: job %s waited in the prefetch past its lease (the worker was paused "
            "or starved); giving it back instead of starting it", self.id, record.id,
            extra={"job_id": record.id, "task": record.task},
        )
        self._give_back_unstarted(record)

    def _give_back_late(self, record: JobRecord) -> None:
        """A prefetched job of a rate limit that waited in the prefetch longer than its
        limit counted on (`PREFETCH_START_WITHIN`): starting it now could put more starts
        in a window than the limit allows. Give it back, attempt not counted; the next
        fetch leases it again against fresh tokens."""
        log.debug("worker %s: job %s of limit %s waited past its start window; giving it back",
                  self.id, record.id, record.limit_name)
        self._give_back_unstarted(record)

    def _give_back_unstarted(self, record: JobRecord) -> None:
        try:
            released = self.backend.job_release_many(
                self.id, [HeldJob(record.id, record.lease_token)]
            )
            self.stats.released += len(released)
        except ConveyorError as exc:
            log.warning(
                "worker %s: could not give job %s back (%s); its lease expires instead",
                self.id, record.id, exc,
            )
        self.held.forget(record)

    def _suspend(self, record: JobRecord, wait: float, step: tuple[str, str]) -> None:
        """A durable wait (`ctx.sleep`) ended the attempt: the completer records its step
        and gives the job back for `wait` seconds, attempt not counted, in one transaction
        batched with the other waits queued."""
        if not self.held.finished(record):
            log.warning(
                "worker %s: job %s began a wait after its attempt was given up (timeout, "
                "lost lease or shutdown); the wait is not recorded", self.id, record.id,
                extra={"job_id": record.id, "task": record.task},
            )
            return
        wait = min(wait, MAX_DEFER) if math.isfinite(wait) and wait > 0 else 0.0
        self.completer.submit_suspension(Suspension(record, wait, StepSave(
            record.id, record.lease_token, step[0], step[1], "waiting", wake_in=wait,
        )))

    def _defer(self, record: JobRecord, wait: float) -> None:
        """Give a job back for `wait` seconds (a middleware, e.g. an open circuit, asked
        for it), attempt not counted."""
        # An AttemptResult built by hand may carry any number: keep it storable.
        wait = min(wait, MAX_DEFER) if math.isfinite(wait) and wait > 0 else 0.0
        ours = self.held.begin_deferral(record)
        failures = 0
        given_back = False
        while ours:
            try:
                self.backend.job_release_many(
                    self.id, [HeldJob(record.id, record.lease_token)], delay=wait
                )
                self.stats.deferred += 1
                self._wakes.add(wait)
                given_back = True
                break
            except BackendError as exc:
                failures += 1
                if self._stopping.is_set():
                    # Keep holding it: shutdown's release gives it back (attempt not
                    # counted), or its lease expires. No retry loop against a dead backend.
                    break
                self._backend_failed(exc, failures)
        self.held.end_deferral(record, dropped=given_back or not ours)

    # -- cancelling running jobs (see docs/workflows.md, "Cancellation") ------------------
    def _cancelled(self, record: JobRecord) -> None:
        """The task stopped on a cancel request (`ctx.check_cancelled()`): the job ends
        `cancelled`, fenced by the lease."""
        if not self.held.begin_deferral(record):
            self.held.end_deferral(record, dropped=True)
            return
        done = False
        try:
            done = self.backend.job_cancel_running(record.id, record.lease_token)
        except ConveyorError as exc:
            log.warning("worker %s: could not mark job %s cancelled (%s); its lease expires "
                        "and the request stands", self.id, record.id, exc)
        if done:
            log.info("worker %s: job %s cancelled (it stopped by itself)", self.id, record.id,
                     extra={"job_id": record.id, "task": record.task})
        self.held.end_deferral(record, dropped=True)

    def _watch_cancels(self) -> None:
        """Every poll interval (at most a second), while attempts run: ask which of them
        an operator cancelled; once a job's grace has passed, stop it hard. A child
        process is killed; a thread cannot be, so its attempt is abandoned (the job is
        cancelled, the thread's outcome and any later step are refused) and its slot
        stays busy until the function returns."""
        interval = min(max(self.poll_interval, 0.05), 1.0)
        while not self._hard_stop.wait(interval):
            if self._stopping.is_set():
                continue
            with self.held.lock:
                running = self.held.running
            if not running:
                continue
            jobs, _ = self.held.snapshot()
            try:
                requests = self.backend.job_cancel_watch(self.id, [j.id for j in jobs])
            except ConveyorError:
                continue  # the heartbeat reports an unreachable backend
            for request in requests:
                if request.age >= request.grace:
                    self._cancel_hard(request.job_id, request.lease_token, request.grace)

    def _cancel_hard(self, job_id: int, lease_token: int, grace: float) -> None:
        held = self.held.take_for_cancel(job_id, lease_token)
        if held is None:
            return
        if held.child is not None:
            held.child.kill()
        try:
            self.backend.job_cancel_running(job_id, lease_token)
        except ConveyorError as exc:
            log.warning("worker %s: could not mark job %s cancelled (%s)", self.id, job_id, exc)
            return
        log.warning(
            "worker %s: job %s did not stop within its cancel grace of %.1fs: %s",
            self.id, job_id, grace,
            "its process was killed" if held.child is not None else
            "marked cancelled; its thread runs on until the function returns (its outcome "
            "and steps are refused)",
            extra={"job_id": job_id, "task": held.record.task},
        )

    def _finish(self, record: JobRecord, result: AttemptResult) -> None:
        if not self.held.finished(record):
            if self.held.forget_cancelled(record):
                log.info("worker %s: the attempt of cancelled job %s returned; its outcome is "
                         "not recorded", self.id, record.id, extra={"job_id": record.id})
                return
            log.warning(
                "worker %s: job %s finished after its attempt was given up (timeout, lost lease "
                "or shutdown); its outcome is not recorded", self.id, record.id,
                extra={"job_id": record.id, "task": record.task},
            )
            return
        if result.kind == "retry_after" and result.pause_limit is not None:
            self._pause_limit(record, result)
        self.completer.submit(record, result)

    def _pause_limit(self, record: JobRecord, result: AttemptResult) -> None:
        """Back-pressure from the task (RetryAfter(limit=...)): pause the limit, or one
        key of it, for every worker."""
        name, key = result.pause_limit, result.pause_key
        assert name is not None
        try:
            found = self.backend.limit_pause(name, key, result.retry_after, result.message)
        except BackendError as exc:
            log.warning("worker %s: could not pause limit %s: %s", self.id, name, exc)
            return
        if not found:
            log.warning(
                "worker %s: job %s asked to pause limit %r, which is not declared; declare it "
                "with app.limit(%r, ...)", self.id, record.id, name, name,
            )
            return
        log.info("worker %s: limit %s%s paused for %gs by job %s", self.id, name,
                 "" if key is None else f" key {key!r}", result.retry_after, record.id)
        events = self.deps.events
        if events.wants(EventName.LIMIT_PAUSED):
            events.emit(JobEvent(
                EventName.LIMIT_PAUSED, record.id, record.task, record.queue,
                attempt=record.attempt, worker=self.id, retry_delay=result.retry_after,
                limit=name, limit_key=key,
            ))

    # -- shutdown ---------------------------------------------------------------------
    def _shutdown(self) -> None:
        backend = self.backend
        held = self.held
        deadline = time.monotonic() + (0.0 if self._hard_stop.is_set() else self.grace)
        with held.changed:
            while held.running > 0 and not self._hard_stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                held.changed.wait(min(left, 0.1))
        # Whatever still runs, or was fetched and never started, goes back to the queue
        # now, instead of waiting for its lease.
        left_over = held.take_for_shutdown()
        jobs = left_over.running + left_over.prefetched
        if jobs:
            try:
                released = set(backend.job_release_many(
                    self.id, [HeldJob(h.record.id, h.record.lease_token) for h in jobs]
                ))
                self.stats.released += len(released)
                running = [h.record.id for h in left_over.running if h.record.id in released]
                prefetched = sum(h.record.id in released for h in left_over.prefetched)
                if running:
                    log.warning(
                        "worker %s: grace period over, released %d running job(s): %s",
                        self.id, len(running), running,
                    )
                if prefetched:
                    log.info(
                        "worker %s: gave back %d prefetched job(s) that had not started",
                        self.id, prefetched,
                    )
            except ConveyorError as exc:
                log.error(
                    "worker %s: could not release %d job(s) (%s); their leases will expire",
                    self.id, len(jobs), exc,
                )
            for h in left_over.running:
                if h.child is not None:
                    h.child.kill()
        for _ in range(self.concurrency):
            self._work.put(None)
        with contextlib.suppress(ConveyorError):
            self.retry_budgets.flush()
        self.completer.close()
        self._completer.join(timeout=max(5.0, self.grace))
        self._hard_stop.set()
        self._heartbeat.join(timeout=5.0)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self.maintenance.resign()
        with contextlib.suppress(ConveyorError):
            backend.worker_remove(self.id)
        self.deps.events.publish(OpsEvent("worker.stopped", self.id, {
            "succeeded": self.stats.succeeded, "retried": self.stats.retried,
            "dead": self.stats.dead, "released": self.stats.released}))
        log.info(
            "worker %s stopped: %d succeeded, %d retried, %d dead, %d released",
            self.id, self.stats.succeeded, self.stats.retried, self.stats.dead,
            self.stats.released,
        )

    def _install_signal_handlers(self) -> Callable[[], None]:
        if (
            not self.settings.install_signals
            or threading.current_thread() is not threading.main_thread()
        ):
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


__all__ = ["POOLS", "PREFETCH_HORIZON", "Worker", "WorkerStats"]


def scrubbed(result: AttemptResult, record: JobRecord) -> AttemptResult:
    """The result with the task's secret argument values blanked from its error text
    (see `conveyor.redaction`)."""
    if result.kind == "ok":
        return result
    secrets = redaction.secret_values(record.task, record.args, record.kwargs)
    if not secrets:
        return result
    return replace(result, message=redaction.scrub(result.message, secrets),
                   traceback=redaction.scrub(result.traceback, secrets))
