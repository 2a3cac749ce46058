"""`Conveyor`: configuration, the task registry, and the backend chosen by URL.

Building a `Conveyor` touches nothing: the backend connects on first use, so
importing a module that defines an app has no side effect beyond registration.
The one exception is `when_unreachable="spool"`: the local spool file is opened
(created if need be) and checked at once, so a bad spool fails at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar, overload
from urllib.parse import urlsplit

from conveyor.backends import Backend, backend_scheme, open_backend
from conveyor.backends.base import InsertResult, JobInsert, SendGate, SpoolReport
from conveyor.clock import Clock
from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    EnqueueOutcomeUnknown,
    InvalidOptionError,
    NotStoredError,
    OperationError,
    UnknownTaskError,
)
from conveyor.events import EventBus, EventName, JobEvent, OpsEvent
from conveyor.incidents.eventlog import EventLog
from conveyor.job import Job, job_from_record
from conveyor.limits import LimitSpec, build_limit
from conveyor.middleware import EnqueueJob, Middleware, chain_enqueue, check_middleware
from conveyor.operations import Operations, local_actor
from conveyor.retry import (
    DEFAULT_RETRY,
    DEFAULT_RETRY_BUDGET,
    CircuitBreaker,
    RetryBudget,
    RetryPolicy,
)
from conveyor.scheduler import CronEntry, CronExpression, CronScheduler, build_entry
from conveyor.settings import Settings
from conveyor.spool import SPOOL_FILE, Forwarder, Spool, SpoolStatus
from conveyor.task import (
    Task,
    build_options,
    check_max_attempts,
    check_priority,
    check_queue,
    job_insert,
)
from conveyor.types import JobState
from conveyor.workflow import Workflow, WorkflowHandle, new_workflow_id, store_workflow

if TYPE_CHECKING:
    from conveyor.incidents.detectors import SpoolView
    from conveyor.incidents.service import Incidents
    from conveyor.insights import Insights
    from conveyor.observability.alerts import AlertEvaluator, AlertSink
    from conveyor.observability.slo import Objective
    from conveyor.worker import Worker

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_URL = "sqlite:///conveyor.db"
WHEN_UNREACHABLE = ("raise", "spool")
"""What an enqueue does when the database does not answer within `unreachable_timeout`."""
_SECONDS_PER_JOB = 0.0002
"""Added to the enqueue deadline per job once a batch is sent (20,000 jobs: 4 s more):
storing a large batch takes a busy database longer than the deadline for an answer."""
_ENQUEUE_THREADS = 16
"""Threads that carry enqueues under a deadline (a call whose database hangs holds one)."""


class _DaemonPool:
    """Threads that carry writes a caller waits for with a deadline, started as needed
    up to `size`. Daemon threads: one stuck on a database that does not answer never
    holds up the process's exit. Belongs to the process that made it (see `owned`)."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self._size = size
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    @property
    def owned(self) -> bool:
        """False in a forked child: the threads stayed in the parent."""
        return self.pid == os.getpid()

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._idle == 0 and self._threads < self._size:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"conveyor-enqueue-{self._threads}", daemon=True
                ).start()
            else:
                self._idle -= 1 if self._idle else 0
        self._queue.put((future, fn))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        with self._lock:
            count = self._threads
        for _ in range(count):
            self._queue.put(None)


def check_when_unreachable(value: object) -> str:
    if value not in WHEN_UNREACHABLE:
        raise ConfigurationError(
            f"when_unreachable must be 'raise' (fail at once, certainly not stored) or "
            f"'spool' (keep the job on local disk, deliver it later), got {value!r}"
        )
    return str(value)


def default_spool_path(url: str) -> str:
    """Next to a SQLite database (`<file>.spool`), else under the user's cache folder,
    one per database URL."""
    if backend_scheme(url) == "sqlite":
        from conveyor.backends.sqlite.backend import parse_sqlite_url

        path, _ = parse_sqlite_url(url)
        if path and path != ":memory:":
            return os.path.abspath(path) + ".spool"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return os.path.join(cache, "conveyor", "spool", digest)


def _seconds(value: float | timedelta, name: str, *, minimum: float = 0.0) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < minimum:
        raise ConfigurationError(f"{name} must be a number of seconds >= {minimum}, got {value!r}")
    return float(seconds)


class TaskDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Task[P, R]: ...


class Conveyor:
    """One job system: where jobs live, which tasks exist, and the defaults for both.

    ``Conveyor()`` reads ``CONVEYOR_URL`` and falls back to ``sqlite:///conveyor.db``.

    `when_unreachable`: what an enqueue does when the database does not answer within
    `unreachable_timeout` seconds: "raise" (`NotStoredError`, certainly not stored) or
    "spool" (written to the local spool in `spool_path`, at most `spool_max_jobs`
    jobs and none older than `spool_max_age`, and forwarded once the database
    answers). See docs/spool.md.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        lease: float | timedelta = 30.0,
        poll_interval: float | timedelta = 1.0,
        default_queue: str = "default",
        default_priority: int = 5,
        default_max_attempts: int = 5,
        default_retry: RetryPolicy = DEFAULT_RETRY,
        retry_budget: RetryBudget | None = DEFAULT_RETRY_BUDGET,
        idempotency_window: float | timedelta = timedelta(hours=24),
        retention: float | timedelta = timedelta(days=7),
        connect_timeout: float | timedelta = 5.0,
        clock: Clock | None = None,
        middleware: Sequence[Middleware] = (),
        audit_retention: float | timedelta = timedelta(days=90),
        when_unreachable: str = "raise",
        unreachable_timeout: float | timedelta = 1.0,
        spool_path: str | os.PathLike[str] | None = None,
        spool_max_jobs: int = 100_000,
        spool_max_age: float | timedelta = timedelta(days=1),
        event_retention: float | timedelta = timedelta(days=30),
        dashboard_url: str | None = None,
    ) -> None:
        self.url = url or os.environ.get("CONVEYOR_URL") or DEFAULT_URL
        # Validate the URL now (cheap, no connection) so a typo fails at start-up.
        backend_scheme(self.url)
        self.lease = _seconds(lease, "lease", minimum=0.1)
        self.poll_interval = _seconds(poll_interval, "poll_interval", minimum=0.001)
        if self.poll_interval >= self.lease:
            raise ConfigurationError(
                f"poll_interval ({self.poll_interval}s) must be shorter than the lease "
                f"({self.lease}s), or leases expire between two heartbeats"
            )
        try:
            self.default_queue = check_queue(default_queue)
            self.default_priority = check_priority(default_priority)
            self.default_max_attempts = check_max_attempts(default_max_attempts)
        except Exception as exc:
            raise ConfigurationError(str(exc)) from exc
        if not isinstance(default_retry, RetryPolicy):
            raise ConfigurationError(
                f"default_retry must be a conveyor.Retry or another RetryPolicy (an object "
                f"with a delay(attempt) method), got {default_retry!r}"
            )
        self.default_retry = default_retry
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise ConfigurationError(
                f"retry_budget must be a conveyor.RetryBudget, or None for no budget, "
                f"got {retry_budget!r}"
            )
        self.retry_budget = retry_budget
        """Tasks' retry budget unless a task sets its own (None: no budget)."""
        self.idempotency_window = _seconds(idempotency_window, "idempotency_window")
        self.retention = _seconds(retention, "retention")
        self.connect_timeout = _seconds(connect_timeout, "connect_timeout", minimum=0.1)
        self.audit_retention = _seconds(audit_retention, "audit_retention", minimum=3600.0)
        """Seconds an audit entry is kept (see `conveyor.operations`)."""
        self.when_unreachable = check_when_unreachable(when_unreachable)
        """'raise' or 'spool': see docs/spool.md."""
        self.unreachable_timeout = _seconds(
            unreachable_timeout, "unreachable_timeout", minimum=0.05
        )
        """Seconds an enqueue waits for the database before it raises or spools."""
        if isinstance(spool_max_jobs, bool) or not isinstance(spool_max_jobs, int) \
                or spool_max_jobs < 1:
            raise ConfigurationError(f"spool_max_jobs must be an int >= 1, got {spool_max_jobs!r}")
        self.spool_max_jobs = spool_max_jobs
        self.spool_max_age = _seconds(spool_max_age, "spool_max_age", minimum=1.0)
        self.spool_path = (
            os.fspath(spool_path) if spool_path is not None else default_spool_path(self.url)
        )
        self._spool: Spool | None = None
        self._spool_checked = False
        self._spool_pid = 0
        self._forwarder: Forwarder | None = None
        self._spool_lock = threading.Lock()
        self._executor: _DaemonPool | None = None
        if self.when_unreachable == "spool":
            # Open (and check) the spool now: a folder that is not writable or a file
            # of a newer version fails at start-up, not at the first outage.
            self.spool  # noqa: B018
        self.clock = clock
        self.events = EventBus()
        """Job events of this process (see `conveyor.events`): metrics and logs subscribe."""
        self.event_retention = _seconds(event_retention, "event_retention", minimum=3600.0)
        """Seconds an operational event is kept (see `conveyor.incidents`)."""
        from conveyor.incidents import check_dashboard_url

        self.dashboard_url = check_dashboard_url(dashboard_url)
        """Where the dashboard is served (https://...): alert notices link incidents there."""
        self.event_log = EventLog(
            lambda: self.backend, retention=self.event_retention,
            now=clock.now if clock is not None else time.time,
        )
        """The durable log of operational events: what the bus publishes, written in batches."""
        self.events.subscribe_ops(self.event_log.record)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.limits: dict[str, LimitSpec] = {}
        """Declared flow-control limits by name (see `limit`)."""
        self._queue_limits: dict[str, str] = {}
        self._limits_declared = False
        self.schedules: dict[str, CronEntry] = {}
        """Periodic jobs by entry name (see `cron`)."""
        self.objectives: dict[str, Objective] = {}
        """Declared SLOs by name (see `slo`)."""
        self.alert_sinks: list[AlertSink] = []
        self.alert_interval = 60.0
        self._backend: Backend | None = None
        self._backend_lock = threading.Lock()
        self.middleware: list[Middleware] = []
        """Enqueue and attempt middleware, the first one outermost (see `add_middleware`)."""
        self._enqueue_chain = chain_enqueue((), self._store)
        for m in middleware:
            self.add_middleware(m)

    def __repr__(self) -> str:
        return f"<Conveyor {self.url} tasks={len(self.tasks)}>"

    def open_result(self, value: Any, task: str) -> Any:
        """A stored result as its task returned it: decrypted by the app's key ring when
        it is encrypted (see `conveyor.encryption`)."""
        from conveyor.encryption import Encryption
        from conveyor.redaction import envelope_key

        if envelope_key(value) is None:
            return value
        ring = next((m for m in self.middleware if isinstance(m, Encryption)), None)
        if ring is None:
            from conveyor.errors import EncryptionKeyMissing

            key = envelope_key(value) or "?"
            raise EncryptionKeyMissing(
                f"the result is encrypted with key {key!r} and this app has no key ring: "
                "give it Conveyor(..., middleware=[Encryption(keys=...)])", key_id=key,
            )
        return ring.open_result(value, task)

    # -- backend ----------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """The storage engine; created on first use."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = open_backend(
                        self.url, clock=self.clock, connect_timeout=self.connect_timeout
                    )
        return self._backend

    @property
    def settings(self) -> Settings:
        """This app's settings as one frozen value, for the services that read them."""
        return Settings(
            lease=self.lease, poll_interval=self.poll_interval,
            default_queue=self.default_queue, default_priority=self.default_priority,
            default_max_attempts=self.default_max_attempts, default_retry=self.default_retry,
            idempotency_window=self.idempotency_window, retention=self.retention,
            connect_timeout=self.connect_timeout,
        )

    def close(self, *, flush_timeout: float = 1.0) -> None:
        """Close the backend's connections (a later use opens new ones). The spool
        forwarder first tries to deliver what is spooled for up to `flush_timeout`
        seconds, then stops; what is left stays on disk for the next start."""
        self.event_log.close()
        with self._spool_lock:
            forwarder, self._forwarder = self._forwarder, None
            spool, self._spool = self._spool, None
            executor, self._executor = self._executor, None
            self._spool_checked = False
        if forwarder is not None:
            forwarder.stop(flush_timeout)
        if spool is not None:
            spool.close()
        if executor is not None:
            executor.shutdown()
        with self._backend_lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    @property
    def operations(self) -> Operations:
        """The operator actions (retry, cancel, purge, pause, tokens), each audited."""
        return Operations(self.backend, audit_retention=self.audit_retention, events=self.events)

    def migrate(self, *, dry_run: bool = False) -> list[tuple[int, str]]:
        """Bring the database schema up to date (or show what would run)."""
        applied = self.backend.migrate(dry_run=dry_run)
        if applied and not dry_run:
            self.events.publish(OpsEvent("schema.migrated", str(applied[-1][0]),
                                         {"versions": [v for v, _ in applied]}))
        return applied

    @property
    def incidents(self) -> Incidents:
        """Incidents, their postmortem drafts, the event log and the detectors."""
        from conveyor.incidents.service import Incidents

        return Incidents(
            self.backend, self.objectives, events=self.events, dashboard_url=self.dashboard_url,
            schedules=self.schedules, spool=self._spool_view,
        )

    def _spool_view(self) -> SpoolView | None:
        from conveyor.incidents.detectors import SpoolView

        status = self.spool_status()
        return None if status is None else SpoolView(status.path, status.depth, status.oldest_age)

    def annotate(self, text: str, *, by: str = "", kind: str = "annotation",
                 subject: str = "") -> None:
        """Write an annotation ("deployed v1.4.2") into the event log now: incident drafts
        list it under what changed just before. `by`: who (default: this user and host)."""
        from conveyor.operations import local_actor

        self.operations.annotate(text, actor=by or local_actor("app"), source="app",
                                 kind=kind, subject=subject)

    # -- tasks ------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        dont_retry: Iterable[type[BaseException]] = (),
        retry_on: Iterable[type[BaseException]] = (Exception,),
        tags: Iterable[str] = (),
        breaker: CircuitBreaker | None = None,
        retry_budget: RetryBudget | Literal[False] | None = None,
        secret: Iterable[str] = (),
        rate_limit: str | None = None,
        concurrency: int | None = None,
        limit: str | None = None,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        dont_retry: Iterable[type[BaseException]] = (),
        retry_on: Iterable[type[BaseException]] = (Exception,),
        tags: Iterable[str] = (),
        breaker: CircuitBreaker | None = None,
        retry_budget: RetryBudget | Literal[False] | None = None,
        secret: Iterable[str] = (),
        rate_limit: str | None = None,
        concurrency: int | None = None,
        limit: str | None = None,
    ) -> Any:
        """Register a function as a task, under `name` (default: the function's name).

        The name is what is stored with each job: keep it stable across deploys.
        `secret` names parameters whose values every reader shows as `•••` (the
        API, the dashboard, the CLI, error messages); see `conveyor.redaction`.
        """
        secret_names = (secret,) if isinstance(secret, str) else tuple(secret)
        if limit is not None and (rate_limit is not None or concurrency is not None):
            raise ConfigurationError(
                "give limit='name' (a shared limit) or rate_limit=/concurrency= (the task's "
                "own), not both: put the numbers on app.limit('name', ...)"
            )
        if limit is not None and limit not in self.limits:
            raise ConfigurationError(
                f"no limit named {limit!r}: declare it first, e.g. "
                f"app.limit({limit!r}, rate='25/s'); known: {sorted(self.limits) or 'none'}"
            )
        options = build_options(
            queue=queue, priority=priority, max_attempts=max_attempts, retry=retry,
            timeout=timeout, dont_retry=dont_retry, retry_on=retry_on, tags=tags,
            breaker=breaker, retry_budget=retry_budget, limit=limit,
        )

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(func):
                raise ConfigurationError(f"@app.task decorates a function, got {func!r}")
            task_name = name or func.__qualname__
            if "<locals>" in task_name and name is None:
                task_name = func.__name__
            existing = self.tasks.get(task_name)
            if existing is not None and existing.fn is not func:
                raise ConfigurationError(
                    f"a task named {task_name!r} is already registered (from "
                    f"{existing.fn.__module__}); give one of them name=..."
                )
            task_options = options
            if rate_limit is not None or concurrency is not None:
                own = f"task:{task_name}"
                self.limit(own, rate=rate_limit, concurrency=concurrency)
                task_options = replace(options, limit=own)
            task: Task[Any, Any] = Task(self, func, task_name, task_options)
            marked = _marked_secrets(func)
            if secret_names or marked:
                _declare_secrets(task, (*secret_names, *marked))
            self.tasks[task_name] = task
            return task

        if fn is not None:
            return register(fn)
        return register

    def cron(
        self,
        schedule: str,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        timezone: str = "UTC",
        max_lateness: float | timedelta = 600.0,
    ) -> Callable[[Task[P, R]], Task[P, R]]:
        """Enqueue the task at every tick of a cron `schedule`; goes above `@app.task`.

            @app.cron("0 3 * * *", timezone="Europe/Paris")
            @app.task()
            def nightly_report() -> None: ...

        Workers enqueue each tick once, however many run (see `conveyor.scheduler`).
        `args`/`kwargs` are checked against the task now; `name` (default: the task's)
        tells several schedules of one task apart. A tick no worker saw within
        `max_lateness` seconds is skipped, not fired late.
        """
        expression_check = CronExpression.parse(schedule)
        lateness = _seconds(max_lateness, "max_lateness", minimum=60.0)

        def register(task: Task[P, R]) -> Task[P, R]:
            if not isinstance(task, Task) or task.app is not self:
                raise ConfigurationError(
                    f"@app.cron({expression_check.text!r}) goes above @app.task of the same "
                    f"app, got {task!r}"
                )
            entry = build_entry(
                task, schedule, args=args, kwargs=kwargs, name=name, timezone=timezone,
                max_lateness=lateness,
            )
            if entry.name in self.schedules:
                raise ConfigurationError(
                    f"a schedule named {entry.name!r} already exists: give this one name=..."
                )
            self.schedules[entry.name] = entry
            return task

        return register

    # -- flow control ----------------------------------------------------------------
    def limit(
        self,
        name: str,
        *,
        rate: str | float | None = None,
        burst: float | None = None,
        concurrency: int | None = None,
        key_rate: str | float | None = None,
        key_burst: float | None = None,
        key_concurrency: int | None = None,
        queue: str | None = None,
        weights: Mapping[str, int] | None = None,
    ) -> LimitSpec:
        """Declare a limit that holds across every worker (docs/flow-control.md).

        `rate`: starts per period ('25/s', '600/m'), a token bucket of `burst` jobs
        (default: one second's worth); `concurrency`: most running at once. `key_*`:
        the same for each key (`using(limit_key=...)`); keys take turns. `queue`:
        jobs of that queue that name no limit fall under this one. `weights`: keys
        that get more than one job per round of turns ({"tenant:vip": 3}). Tasks name it
        with `@app.task(limit=name)` or `task.using(limit=name)`. The numbers are
        stored when the app first enqueues or a worker starts; an operator can
        change them at run time (`conveyor limits set`).
        """
        try:
            spec = build_limit(
                name, rate=rate, burst=burst, concurrency=concurrency, key_rate=key_rate,
                key_burst=key_burst, key_concurrency=key_concurrency,
                queue=None if queue is None else check_queue(queue),
                weights=None if weights is None else dict(weights),
            )
        except InvalidOptionError as exc:
            raise ConfigurationError(str(exc)) from exc
        if name in self.limits and self.limits[name] != spec:
            raise ConfigurationError(f"a limit named {name!r} is already declared differently")
        if queue is not None:
            other = self._queue_limits.get(queue)
            if other is not None and other != name:
                raise ConfigurationError(
                    f"queue {queue!r} already falls under limit {other!r}: one limit per queue"
                )
            self._queue_limits[queue] = name
        self.limits[name] = spec
        self._limits_declared = False
        return spec

    def limit_for(self, name: str | None, queue: str) -> str | None:
        """The limit a job names (it must be declared), else its queue's, else None."""
        if name is None:
            return self._queue_limits.get(queue)
        if name not in self.limits:
            raise InvalidOptionError(
                f"no limit named {name!r}: declare it with app.limit({name!r}, rate='25/s') "
                f"(known: {sorted(self.limits) or 'none'})"
            )
        return name

    def declare_limits(self) -> None:
        """Store the declared limits (once per process; again after a new declaration)."""
        if self.limits and not self._limits_declared:
            self.backend.limit_declare(list(self.limits.values()))
            self._limits_declared = True

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(
                f"no task named {name!r} is registered in this app (known: {known}); "
                "import the module that defines it before starting the worker"
            ) from None

    def retry_policy(self, task: Task[Any, Any]) -> RetryPolicy:
        return task.options.retry or self.default_retry

    # -- middleware -------------------------------------------------------------------
    def add_middleware(self, middleware: Middleware) -> None:
        """Add a middleware inside those already added (see `conveyor.middleware`)."""
        self.middleware.extend(check_middleware([middleware]))
        self._enqueue_chain = chain_enqueue(self.middleware, self._store)

    # -- jobs -------------------------------------------------------------------------
    def enqueue_jobs(
        self,
        jobs: Sequence[EnqueueJob],
        *,
        connection: Any = None,
        when_unreachable: str | None = None,
    ) -> list[Job[Any]]:
        """Store prepared jobs (`task.prepare(...)`) in one transaction, through the
        enqueue middleware: the one path every enqueue takes (tasks, cron, the HTTP API).

        `connection`: the application's own database connection, to enqueue inside its
        transaction (never spooled). Returns one handle per job stored or found by
        idempotency key, or spooled. `when_unreachable`: 'raise' or 'spool' for this
        call (default: the app's), see docs/spool.md.
        """
        if when_unreachable is not None and when_unreachable not in WHEN_UNREACHABLE:
            raise InvalidOptionError(
                f"when_unreachable must be 'raise' or 'spool', got {when_unreachable!r}"
            )
        mode = when_unreachable or self.when_unreachable
        batch = list(jobs)
        for i, job in enumerate(batch):
            if not isinstance(job, EnqueueJob):
                raise InvalidOptionError(
                    f"item {i} of enqueue_jobs is a {type(job).__name__}: pass "
                    "task.prepare(...) results"
                )
        if not batch:
            return []
        if not self._spool_checked:
            self._spool_checked = True
            if self.spool_has_jobs():
                self.forwarder.written()  # jobs left by an earlier run: deliver them now,
                self.forwarder.start()    # and new ones after them
        if connection is None and mode == self.when_unreachable:
            return self._enqueue_chain(batch)
        return chain_enqueue(
            self.middleware, lambda b: self._store(b, connection, mode)
        )(batch)

    def _store(
        self, jobs: list[EnqueueJob], connection: Any = None, mode: str | None = None
    ) -> list[Job[Any]]:
        check = bool(self.middleware)
        if not self._limits_declared and self.limits:
            with contextlib.suppress(BackendError):  # unreachable: the insert says so
                self.declare_limits()
        # A client id per job: the time in microseconds (13 hex digits), then 76 random
        # bits (one read of the OS's randomness per batch). Time first, so new ids land at
        # the right edge of the database's unique index on them, as ascending ids do: a
        # random id lands anywhere in it, and a bulk insert of random ids took the server
        # half as long again (20,000 jobs: 1.17 s against 0.78 s, on a loaded machine).
        prefix = f"{time.time_ns() // 1000:013x}"
        ids = os.urandom(10 * len(jobs)).hex()
        inserts = [
            job_insert(j, check=check, client_id=prefix + ids[20 * i:20 * i + 19])
            for i, j in enumerate(jobs)
        ]
        if connection is not None:  # the application's transaction: never spooled
            results = self.backend.job_insert_many(inserts, connection=connection)
        else:
            stored = self._insert_within(inserts, mode or self.when_unreachable)
            if stored is None:
                return [
                    Job(self, None, JobState.SCHEDULED if (i.run_at or i.delay) else
                        JobState.AVAILABLE, client_id=i.client_id, spooled=True)
                    for i in inserts
                ]
            results = stored
        if self.events.wants(EventName.ENQUEUED):
            self.events.emit_all(
                JobEvent(EventName.ENQUEUED, r.id, insert.task, insert.queue)
                for insert, r in zip(inserts, results, strict=True) if r.created
            )
        return [
            Job(self, r.id, r.state, created=r.created, client_id=insert.client_id)
            for insert, r in zip(inserts, results, strict=True)
        ]

    def enqueue_workflow(self, workflow: Workflow, *, connection: Any = None) -> WorkflowHandle:
        """Store a whole workflow (see `conveyor.workflow`) in one transaction: the
        application's own when `connection` is given (it exists if and only if that
        transaction commits). A cycle in `depends_on` raises `WorkflowCycleError`
        and stores nothing. Never spooled: a graph is stored whole or not at all."""
        if not isinstance(workflow, Workflow):
            raise InvalidOptionError(
                f"enqueue_workflow takes a Workflow (chain, group, chord, batch), got "
                f"{type(workflow).__name__}"
            )
        if not len(workflow):
            raise InvalidOptionError("the workflow has no jobs: add some with wf.add(...)")
        workflow.check()
        workflow_id = new_workflow_id()
        check = bool(self.middleware)

        def encode(jobs: Sequence[EnqueueJob]) -> list[JobInsert]:
            ids = os.urandom(16 * len(jobs)).hex()
            return [job_insert(j, check=check, client_id=ids[32 * i:32 * i + 32])
                    for i, j in enumerate(jobs)]

        def store(jobs: list[EnqueueJob]) -> list[Job[Any]]:
            _, inserts, results = store_workflow(
                workflow, jobs, backend=self.backend, encode=encode,
                connection=connection, workflow_id=workflow_id,
            )
            if self.events.wants(EventName.ENQUEUED):
                self.events.emit_all(
                    JobEvent(EventName.ENQUEUED, r.id, insert.task, insert.queue)
                    for insert, r in zip(inserts, results, strict=True) if r.created
                )
            return [Job(self, r.id, r.state, created=r.created, client_id=insert.client_id)
                    for insert, r in zip(inserts, results, strict=True)]

        jobs = chain_enqueue(self.middleware, store)(workflow.jobs)
        return WorkflowHandle(workflow_id, jobs)

    # -- enqueue under a deadline -----------------------------------------------------
    def _write_through(
        self, gate: SendGate, jobs: list[JobInsert]
    ) -> Callable[[], list[InsertResult]]:
        def write() -> list[InsertResult]:
            if gate.closed:  # the caller is gone: do not even open a connection
                raise NotStoredError("the enqueue deadline passed before the write started")
            return self.backend.job_insert_many(jobs, gate=gate)

        return write

    def _run(self, fn: Callable[[], Any]) -> Future[Any]:
        with self._spool_lock:
            if self._executor is None or not self._executor.owned:
                self._executor = _DaemonPool(_ENQUEUE_THREADS)
            return self._executor.submit(fn)

    def _insert_within(
        self, inserts: list[JobInsert], mode: str
    ) -> list[InsertResult] | None:
        """Insert within `unreachable_timeout`; None when the jobs were spooled.

        Outcomes: stored (results); certainly not stored (`NotStoredError`, or
        spooled); sent but the answer lost: resolved by client id (stored or not),
        and only when that look-up cannot reach the database within another
        `unreachable_timeout` either, `EnqueueOutcomeUnknown` (raise mode) or
        spooled (spool mode: the forwarder's look-up by client id keeps it single).
        """
        forwarder = self._forwarder
        if mode == "spool" and forwarder is not None and forwarder.holding \
                and self._spool_pid == os.getpid():
            # Spooled jobs wait for the database: this one joins them, behind them (the
            # forwarder keeps the order), at once instead of after another deadline.
            self._spool_write(inserts)
            return None
        timeout = self.unreachable_timeout
        deadline = time.monotonic() + timeout
        gate = SendGate(deadline, allowance=len(inserts) * _SECONDS_PER_JOB)
        future: Future[Any] | None = None
        cause: BaseException | None = None
        try:
            if getattr(self.backend, "enqueue_deadline_in_caller", False):
                # The backend keeps the deadline itself (SQLite: its lock wait;
                # PostgreSQL: the pool's timeout and the watchdog that cuts the socket):
                # the write runs here, without a hand-off to another thread.
                return self.backend.job_insert_many(inserts, gate=gate)
            future = self._run(self._write_through(gate, inserts))
            return list(future.result(timeout=timeout))
        except FutureTimeout:
            sent = gate.close()
        except BackendError as exc:
            sent = gate.close()
            # Unreachable: cannot connect, or (SQLite) still locked when the deadline came.
            # Any other refusal (a schema to migrate, a value refused) is the caller's:
            # the database answered it, so the write did not commit.
            if not isinstance(exc, BackendUnavailable) and (
                sent or time.monotonic() < deadline - 0.05
            ):
                raise
            cause = exc
        if not sent:
            if mode == "spool":
                self._spool_write(inserts)
                return None
            why = cause or "no answer: check that the server is running and reachable"
            raise NotStoredError(
                f"the database at {_where(self.url)} did not answer within {timeout:g}s "
                f"({why}): the {len(inserts)} job(s) were NOT stored; "
                "retry later, or enqueue with when_unreachable='spool'",
                [i.client_id or "" for i in inserts],
            ) from cause
        resolved = self._resolve(inserts, gate, future, timeout)
        if resolved is not None:
            # The batch is one transaction: it committed iff a job of ours is there by its
            # client id. (A job found only by its idempotency key was there before.)
            if not any(r is not None and r.created for r in resolved):
                if mode == "spool":
                    self._spool_write(inserts)
                    return None
                raise NotStoredError(
                    f"the connection broke after the {len(inserts)} job(s) were sent; looked "
                    "up by client id, they were NOT stored: retry",
                    [i.client_id or "" for i in inserts],
                ) from cause
            if all(r is not None for r in resolved):
                return [r for r in resolved if r is not None]
        if mode == "spool":
            self._spool_write(inserts)
            return None
        ids = [i.client_id or "" for i in inserts]
        raise EnqueueOutcomeUnknown(
            f"the connection broke after the {len(inserts)} job(s) were sent and the database "
            f"did not answer a look-up within {timeout:g}s either: they MAY have been stored; "
            f"client id(s) {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}: look them up "
            "once the database answers",
            ids,
        ) from cause

    def _resolve(
        self, inserts: list[JobInsert], gate: SendGate, future: Future[Any] | None,
        timeout: float,
    ) -> list[InsertResult | None] | None:
        """After an ambiguous send: the write's own late answer (when it ran in another
        thread), else a look-up by client id on a new connection (ending the write's
        session first); None if neither came within `timeout`."""
        deadline = time.monotonic() + timeout
        if future is not None:
            try:
                return list(future.result(timeout=min(0.1, timeout)))
            except (FutureTimeout, BackendUnavailable):
                pass
        lookup = self._run(
            lambda: self.backend.job_resolve(inserts, stop_session=gate.session,
                                             deadline=deadline)
        )
        try:
            found: list[InsertResult | None] = lookup.result(
                timeout=max(0.01, deadline - time.monotonic())
            )
        except (FutureTimeout, BackendUnavailable):
            return None
        return found

    # -- the spool ----------------------------------------------------------------------
    @property
    def spool(self) -> Spool:
        """This app's local spool (opened on first use; see docs/spool.md)."""
        with self._spool_lock:
            if self._spool is not None and self._spool_pid != os.getpid():
                # A forked child opens its own connection to the spool, and its own forwarder.
                self._spool, self._forwarder = None, None
            if self._spool is None:
                self._spool_pid = os.getpid()
                self._spool = Spool(
                    self.spool_path, max_jobs=self.spool_max_jobs, max_age=self.spool_max_age
                )
            return self._spool

    @property
    def forwarder(self) -> Forwarder:
        """The thread that delivers spooled jobs (created, not started, on first use)."""
        spool = self.spool
        with self._spool_lock:
            if self._forwarder is None:
                self._forwarder = Forwarder(
                    spool,
                    store=self._forward_store,
                    resolve=self._forward_resolve,
                    report=self._forward_report,
                )
            return self._forwarder

    def spool_has_jobs(self) -> bool:
        """True if the spool file exists and holds jobs (cheap when there is none)."""
        status = self.spool_status()
        return status is not None and status.depth > 0

    def spool_status(self) -> SpoolStatus | None:
        """Depth, oldest age and forwarded count of this app's spool; None if this app
        never spooled (no spool file in `spool_path`)."""
        if self._spool is None and not os.path.exists(
            os.path.join(self.spool_path, SPOOL_FILE)
        ):
            return None
        return self.spool.status()

    def flush_spool(self) -> int:
        """Forward every spooled job now; raises the database's error if it cannot."""
        return self.forwarder.forward_all()

    @property
    def _forward_timeout(self) -> float:
        return max(self.unreachable_timeout, self.connect_timeout)

    def _forward_store(self, jobs: list[JobInsert]) -> list[InsertResult]:
        """Insert spooled jobs within the forward timeout. When it passes after the
        write was sent, the next forward looks them up by client id."""
        gate = SendGate(time.monotonic() + self._forward_timeout)
        future = self._run(self._write_through(gate, jobs))
        try:
            results = list(future.result(timeout=self._forward_timeout))
        except FutureTimeout:
            sent = gate.close()
        else:
            if self.events.wants(EventName.ENQUEUED):  # counted when it reaches the database
                self.events.emit_all(
                    JobEvent(EventName.ENQUEUED, r.id, job.task, job.queue)
                    for job, r in zip(jobs, results, strict=True) if r.created
                )
            return results
        raise NotStoredError(
            f"the database did not answer a forward of {len(jobs)} spooled job(s) within "
            f"{self._forward_timeout:g}s" + ("; the next forward looks them up" if sent else "")
        )

    def _forward_report(self, forwarded: int, status: SpoolStatus) -> None:
        """Tell the database what this host's spool delivered (the dashboard's spool view)."""
        oldest = None if status.oldest_age is None else time.time() - status.oldest_age
        report = SpoolReport(host=socket.gethostname()[:255] or "unknown",
                             path=self.spool_path[:4096], forwarded=forwarded,
                             depth=status.depth, oldest_spooled_at=oldest)
        self._run(lambda: self.backend.spool_report(report)).result(
            timeout=self._forward_timeout)

    def _forward_resolve(self, jobs: list[JobInsert]) -> list[InsertResult | None]:
        deadline = time.monotonic() + self._forward_timeout
        future = self._run(lambda: self.backend.job_resolve(jobs, deadline=deadline))
        try:
            found: list[InsertResult | None] = future.result(timeout=self._forward_timeout)
        except FutureTimeout:
            raise NotStoredError(
                f"the database did not answer within {self._forward_timeout:g}s"
            ) from None
        return found

    def _spool_write(self, inserts: list[JobInsert]) -> None:
        now = time.time()
        # A delay counts from the enqueue, not from the forward.
        self.spool.add([
            replace(i, run_at=now + i.delay, delay=0.0) if i.run_at is None and i.delay else i
            for i in inserts
        ])
        forwarder = self.forwarder
        forwarder.written()
        forwarder.start()
        forwarder.wake()

    def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> Job[Any]:
        """Enqueue by task name (for code that does not import the task)."""
        return self.get_task(task_name).enqueue(*args, **kwargs)

    def signal(self, job: Job[Any] | int, name: str, payload: Any = None) -> str:
        """Wake a job waiting in `ctx.wait_for(name)` with a JSON `payload` (an approval,
        a webhook's body); "woken" or "delivered" (see `Operations.signal`). Raises
        `NotWaitingError` when the job does not wait for that signal."""
        return self.operations.signal(_stored_id(job), name, payload, actor=local_actor("app"),
                                      source="app")

    def cancel(self, job: Job[Any] | int, *, grace: float | None = None) -> bool:
        """Cancel a job, running or not (see `Operations.cancel`); False once it finished."""
        return self.operations.cancel(_stored_id(job), actor=local_actor("app"), source="app",
                                      grace=grace)

    def get_job(self, job_id: int) -> Job[Any] | None:
        record = self.backend.job_get(job_id)
        return None if record is None else job_from_record(self, record)

    # -- observability ------------------------------------------------------------------
    def slo(
        self,
        name: str,
        *,
        task: Task[Any, Any] | str | None = None,
        queue: str | None = None,
        success: float | None = None,
        wait_p99: float | None = None,
        window: str | float | timedelta = "30d",
    ) -> Objective:
        """Declare a service level objective over the jobs of `task` (or of `queue`, or all).

        `success`: the fraction of finished jobs that must end `succeeded` (a job that
        succeeded after retries is good, a dead one is bad). `wait_p99`: seconds within
        which 99% of attempts must start after their run_at (one of
        `conveyor.backends.base.WAIT_BUCKETS`). `window`: e.g. "30d", "7d".
        See docs/observability.md for the SLI model and the burn-rate alerts.
        """
        from conveyor.observability.slo import make_objective

        if name in self.objectives:
            raise ConfigurationError(f"an SLO named {name!r} is already declared")
        task_name = task.name if isinstance(task, Task) else task
        objective = make_objective(
            name, task=task_name, queue=queue, success=success, wait_p99=wait_p99, window=window
        )
        self.objectives[name] = objective
        return objective

    def alert_to(self, *sinks: AlertSink, interval: float | timedelta = 60.0) -> None:
        """Send burn-rate alerts of this app's SLOs to `sinks`.

        Every worker of the app then joins a leader election; the elected one
        evaluates the objectives every `interval` seconds (see
        `conveyor.observability.alerts`).
        """
        if not sinks:
            raise ConfigurationError(
                "alert_to() needs at least one sink, e.g. conveyor.observability.alerts.LogSink()"
            )
        for sink in sinks:
            if not callable(getattr(sink, "send", None)):
                raise ConfigurationError(f"{sink!r} is not an alert sink (it has no send())")
        self.alert_sinks = list(sinks)
        self.alert_interval = _seconds(interval, "interval", minimum=1.0)

    @property
    def insights(self) -> Insights:
        """The read model behind `conveyor status`, `conveyor slo`, metrics and the web UI."""
        from conveyor.insights import Insights

        return Insights(self.backend, self.objectives, self.settings)

    def start_services(self, holder: str) -> Callable[[], None]:
        """Store the declared limits, and start what runs beside a worker (the SLO alert
        evaluator, when configured); returns the function that stops it."""
        self.declare_limits()
        if not (self.alert_sinks and self.objectives):
            return lambda: None
        evaluator = self.alert_evaluator(holder)
        evaluator.start()
        return evaluator.stop

    def alert_evaluator(self, holder: str) -> AlertEvaluator:
        """The SLO alert evaluator as workers run it: its notices go to the sinks, pages
        open and close incidents, and every notice goes into the event log."""
        from conveyor.incidents.tracker import IncidentTracker
        from conveyor.observability.alerts import AlertEvaluator

        return AlertEvaluator(
            self.backend, self.objectives, self.alert_sinks, interval=self.alert_interval,
            holder=holder, events=self.events,
            incidents=IncidentTracker(self.backend, dashboard_url=self.dashboard_url,
                                      events=self.events),
        )

    # -- worker -----------------------------------------------------------------------
    def worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 8,
        pool: str = "thread",
        burst: bool = False,
        grace: float = 30.0,
        app_path: str | None = None,
        **settings: Any,
    ) -> Worker:
        """Build a worker for this app (see `conveyor.worker.Worker` for every setting)."""
        from conveyor.worker import Worker

        return Worker(
            self, queues=queues, concurrency=concurrency, pool=pool, burst=burst, grace=grace,
            app_path=app_path, **settings,
        )

    def run_worker(self, **settings: Any) -> int:
        """Run a worker in this process until stopped (or, with burst=True, until idle)."""
        return self.worker(**settings).run()

    def cron_scheduler(self) -> CronScheduler:
        """The service that enqueues this app's periodic jobs (run by workers)."""
        return CronScheduler(self.schedules, enqueue=self.enqueue_jobs, now=self._now)

    def _now(self) -> float:
        return self.backend.now()  # the backend opens on first use, so looked up each time


def _stored_id(job: Job[Any] | int) -> int:
    if isinstance(job, int):
        return job
    if job.id is None:
        raise OperationError("this job is still in the local spool: it has no id to act on yet")
    return job.id


def _where(url: str) -> str:
    """Where a backend URL points, without its password: host:port/database, or a path."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return parts.path.removeprefix("/") or url
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path}"


def load_app(path: str) -> Conveyor:
    """Import `module:attribute` (or `module`, whose `app` attribute is taken)."""
    module_name, _, attribute = path.partition(":")
    if not module_name:
        raise ConfigurationError(f"app path {path!r} is empty: write module.path:app")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or ""
        if missing and module_name != missing and not module_name.startswith(missing + "."):
            # The app's module was found; something it imports was not.
            where = "".join(traceback.format_exception(exc)).rstrip()
            raise ConfigurationError(
                f"{module_name!r} (for app {path!r}) was found, but importing it failed: "
                f"it needs {missing!r}, which this Python ({sys.executable}) cannot import. "
                f"Install it in this environment, or fix the import.\n{where}"
            ) from exc
        raise ConfigurationError(
            f"cannot import {module_name!r} for app {path!r} ({exc}); run from the folder that "
            "holds it or add it to PYTHONPATH"
        ) from exc
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, Conveyor):
        raise ConfigurationError(
            f"{path!r} is not a Conveyor app (found {type(app).__name__}): point at the "
            "Conveyor() object, e.g. myapp.tasks:app"
        )
    return app


def find_app_path(app: Conveyor) -> str | None:
    """The `module:attribute` an imported app can be found under (for child processes)."""
    from conveyor.worker.settings import module_path_of

    return module_path_of(app)


__all__ = ["DEFAULT_URL", "Conveyor", "find_app_path", "load_app"]


def _marked_secrets(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Parameters annotated `Annotated[..., Secret]`."""
    import typing

    from conveyor.redaction import Secret

    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        # Unresolvable (names local to a function, or defined later): judge the text, and
        # rather redact one parameter too many than leak one.
        import re

        marker = re.compile(r"\bAnnotated\[.*\bSecret\b")
        return tuple(
            name for name, text in getattr(fn, "__annotations__", {}).items()
            if isinstance(text, str) and marker.search(text)
        )
    return tuple(
        name for name, hint in hints.items()
        if typing.get_origin(hint) is typing.Annotated
        and any(extra is Secret for extra in hint.__metadata__)
    )


def _declare_secrets(task: Task[Any, Any], names: tuple[str, ...]) -> None:
    import inspect

    from conveyor import redaction

    params = inspect.signature(task.fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in names:
        if not isinstance(name, str) or (name not in params and not takes_any):
            raise ConfigurationError(
                f"secret={list(names)!r}: {name!r} is not a parameter of {task.name} "
                f"(its parameters: {', '.join(params) or 'none'})"
            )
    positional = [
        p.name for p in params.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    redaction.declare(task.name, names, positional)
