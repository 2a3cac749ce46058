"""`@app.task`, the typed `Task[P, R]` handle, and the `using(...)` option builder.

Options resolve call → task → app: a value given to `using(...)` wins over the
task's decorator, which wins over the app's defaults. `UNSET` marks "not
given", so "not given" and "given as None" differ.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from datetime import datetime, timedelta
from enum import Enum
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    Unpack,
    final,
)

from conveyor import jsonvalue
from conveyor.arguments import ArgumentChecker
from conveyor.backends.base import JobInsert
from conveyor.clock import MAX_AHEAD, check_run_at
from conveyor.errors import (
    ConfigurationError,
    InvalidOptionError,
)
from conveyor.limits import check_limit_key, check_limit_name
from conveyor.middleware import EnqueueJob
from conveyor.retry import CircuitBreaker, RetryBudget, RetryPolicy
from conveyor.tracecontext import current_trace_context

if TYPE_CHECKING:
    from conveyor.job import Job

P = ParamSpec("P")
R = TypeVar("R")

MIN_PRIORITY, MAX_PRIORITY = 0, 9


class _Unset(Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """What `@app.task(...)` fixed for every job of the task (None: the app decides)."""

    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    dont_retry: tuple[type[BaseException], ...] = ()
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    tags: tuple[str, ...] = ()
    breaker: CircuitBreaker | None = None
    retry_budget: RetryBudget | Literal[False] | None = None
    """None: the app's budget; False: no budget for this task."""
    limit: str | None = None
    """The flow-control limit every job of the task waits for (docs/flow-control.md)."""


class UsingOptions(TypedDict, total=False):
    """The options `task.using(...)` accepts; anything else is refused."""

    queue: str
    priority: int
    delay: float | timedelta
    run_at: datetime
    idempotency_key: str | None
    max_attempts: int
    timeout: float | None
    group: str | None
    tags: Sequence[str]
    connection: Any
    when_unreachable: str
    """'raise' or 'spool' for these enqueues (default: the app's), see docs/spool.md."""
    limit: str
    """A limit declared with `app.limit(...)` these jobs wait for (docs/flow-control.md)."""
    limit_key: str
    """The key within the limit (any text, e.g. f"tenant:{id}"): per-key bounds and turns."""


_USING_KEYS = frozenset(UsingOptions.__annotations__)


# -- validation -------------------------------------------------------------------
def check_queue(queue: object) -> str:
    if not isinstance(queue, str) or not queue or len(queue) > 255 or queue != queue.strip():
        raise InvalidOptionError(
            f"queue must be a non-empty name of at most 255 characters, got {queue!r}"
        )
    return queue


def check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
        MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise InvalidOptionError(
            f"priority must be an int from {MIN_PRIORITY} (most urgent) to {MAX_PRIORITY}, "
            f"got {priority!r}"
        )
    return priority


def check_max_attempts(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptionError(f"max_attempts must be an int >= 1, got {value!r}")
    return value


def check_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise InvalidOptionError(f"timeout must be a number of seconds > 0 or None, got {value!r}")
    return float(value)


def check_delay(value: object) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidOptionError(f"delay must be a number of seconds, got {value!r}")
    if value < 0:
        raise InvalidOptionError(f"delay must be >= 0 seconds, got {value!r}: use 0 to run now")
    if value > MAX_AHEAD:
        raise InvalidOptionError(
            f"delay must be at most {MAX_AHEAD:.0f} seconds (100 years), got {value!r}"
        )
    return float(value)


def check_json(value: Any, where: str) -> None:
    """Refuse a return value that is not JSON (text is repaired when stored, not refused)."""
    jsonvalue.check_json(value, where, text=False)


# -- the task ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _CallOptions:
    queue: str | _Unset = UNSET
    priority: int | _Unset = UNSET
    delay: float | _Unset = UNSET
    run_at: datetime | _Unset = UNSET
    idempotency_key: str | _Unset | None = UNSET
    max_attempts: int | _Unset = UNSET
    timeout: float | _Unset | None = UNSET
    group: str | _Unset | None = UNSET
    tags: tuple[str, ...] | _Unset = UNSET
    connection: Any = UNSET
    when_unreachable: str | _Unset = UNSET
    limit: str | _Unset = UNSET
    limit_key: str | _Unset = UNSET


@final
class Call(Generic[P, R]):
    """A task with its arguments, not yet enqueued: an item for `enqueue_many`."""

    __slots__ = ("args", "kwargs", "task")

    def __init__(self, task: Task[P, R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs


class TaskOwner(Protocol):
    """What a task reads of the app that registered it: the defaults its options
    fall back to, and the one enqueue path."""

    @property
    def default_queue(self) -> str: ...
    @property
    def default_priority(self) -> int: ...
    @property
    def default_max_attempts(self) -> int: ...
    @property
    def idempotency_window(self) -> float: ...
    def limit_for(self, name: str | None, queue: str) -> str | None:
        """The limit a job names (checked to exist), else its queue's, else None."""
        ...
    def enqueue_jobs(
        self, jobs: Sequence[EnqueueJob], *, connection: Any = None,
        when_unreachable: str | None = None,
    ) -> list[Job[Any]]: ...


class Task(Generic[P, R]):
    """A registered task. Call it to run inline; `enqueue` it to run on a worker."""

    def __init__(
        self,
        app: TaskOwner,
        fn: Callable[P, R] | Callable[P, Awaitable[R]],
        name: str,
        options: TaskOptions,
        call_options: _CallOptions | None = None,
        *,
        checker: ArgumentChecker | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        self._call = call_options or _CallOptions()
        self.checker = checker or ArgumentChecker(fn, name)
        """Checks arguments against the signature and annotations (shared by `using` copies
        and the HTTP API)."""
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function here and now, as if it were not a task."""
        return self.fn(*args, **kwargs)

    # -- options ------------------------------------------------------------------
    def using(self, **options: Unpack[UsingOptions]) -> Task[P, R]:
        """A copy of this task whose enqueues use these options (the task is unchanged)."""
        unknown = set(options) - _USING_KEYS
        if unknown:
            raise InvalidOptionError(
                f"unknown option(s) {sorted(unknown)} for {self.name}.using(): "
                f"known are {sorted(_USING_KEYS)}"
            )
        changes: dict[str, Any] = {}
        for key, value in options.items():
            if key == "queue":
                value = check_queue(value)
            elif key == "priority":
                value = check_priority(value)
            elif key == "max_attempts":
                value = check_max_attempts(value)
            elif key == "timeout":
                value = check_timeout(value)
            elif key == "delay":
                value = check_delay(value)
            elif key == "run_at":
                if not isinstance(value, datetime) or value.tzinfo is None:
                    raise InvalidOptionError(
                        f"run_at must be an aware datetime (e.g. datetime.now(UTC) + ...), "
                        f"got {value!r}"
                    )
                check_run_at(value.timestamp())
            elif key == "idempotency_key":
                if value is not None and (not isinstance(value, str) or not value):
                    raise InvalidOptionError(
                        f"idempotency_key must be a non-empty str or None, got {value!r}"
                    )
            elif key == "tags":
                if not isinstance(value, list | tuple) or not all(
                    isinstance(t, str) for t in value
                ):
                    raise InvalidOptionError(f"tags must be a list of str, got {value!r}")
                value = tuple(value)
            elif key == "group" and value is not None and not isinstance(value, str):
                raise InvalidOptionError(f"group must be a str or None, got {value!r}")
            elif key == "limit":
                value = check_limit_name(value)
            elif key == "limit_key":
                value = check_limit_key(value)
            elif key == "when_unreachable" and value not in ("raise", "spool"):
                raise InvalidOptionError(
                    f"when_unreachable must be 'raise' or 'spool', got {value!r}"
                )
            changes[key] = value
        if "delay" in changes and "run_at" in changes:
            raise InvalidOptionError("give delay= or run_at=, not both")
        if "delay" in changes:
            changes["run_at"] = UNSET
        if "run_at" in changes and changes["run_at"] is not UNSET:
            changes["delay"] = UNSET
        return Task(self.app, self.fn, self.name, self.options, replace(self._call, **changes),
                    checker=self.checker)

    # -- building jobs --------------------------------------------------------------
    def call(self, *args: P.args, **kwargs: P.kwargs) -> Call[P, R]:
        """Bind arguments without enqueuing, for `enqueue_many`."""
        return Call(self, args, kwargs)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise `InvalidArgumentsError` or `SerializationError` unless the task takes these
        arguments, of the annotated types, and they are JSON (the check every enqueue
        makes, alike for Python and the HTTP API)."""
        # JSON first: "a set is not JSON: pass a list" helps more than "must be list".
        jsonvalue.check_arguments(args, kwargs, self.name)
        self.checker.check(args, kwargs)

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> EnqueueJob:
        """The job `enqueue` would store, checked and with every option resolved, not
        stored: give it (or a list of them) to `app.enqueue_jobs`."""
        return self._prepare(args, kwargs)

    def prepare_partial(self, *args: Any, **kwargs: Any) -> EnqueueJob:
        """`prepare` for a workflow node that receives its parents' results first (a
        chain link, a chord callback): the arguments are checked as JSON, not against
        the signature, since the first one is not known yet. A mismatch fails the
        attempt with a TypeError that says so."""
        return self._prepare(args, kwargs, signature=False)

    def _prepare(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], *, signature: bool = True,
    ) -> EnqueueJob:
        if signature:
            self.check_arguments(args, kwargs)
        else:
            jsonvalue.check_arguments(args, kwargs, self.name)
        return EnqueueJob(args=tuple(args), kwargs=dict(kwargs), **self._options())

    def _options(self, trace_context: Any = UNSET) -> dict[str, Any]:
        """Every field of this task's `EnqueueJob` but the arguments, resolved call ->
        task -> app: the same for each job of a batch, so `enqueue_many` resolves them
        once, not once per job."""
        app, opts, call = self.app, self.options, self._call
        queue = call.queue if call.queue is not UNSET else (opts.queue or app.default_queue)
        limit_name = app.limit_for(call.limit if call.limit is not UNSET else opts.limit, queue)
        if limit_name is None and call.limit_key is not UNSET:
            raise InvalidOptionError(
                f"limit_key= needs a limit for {self.name!r}: declare one with "
                "app.limit('tenants', key_concurrency=2) and enqueue with "
                "using(limit='tenants', limit_key=...)"
            )
        return {
            "task": self.name,
            "queue": queue,
            "limit_name": limit_name,
            "limit_key": None if limit_name is None else (
                "" if call.limit_key is UNSET else call.limit_key),
            "priority": call.priority if call.priority is not UNSET else (
                opts.priority if opts.priority is not None else app.default_priority
            ),
            "max_attempts": call.max_attempts if call.max_attempts is not UNSET else (
                opts.max_attempts or app.default_max_attempts
            ),
            "run_at": None if call.run_at is UNSET else call.run_at,
            "delay": 0.0 if call.delay is UNSET else call.delay,
            "idempotency_key": None if call.idempotency_key is UNSET else call.idempotency_key,
            "idempotency_window": app.idempotency_window,
            "group": None if call.group is UNSET else call.group,
            "timeout": call.timeout if call.timeout is not UNSET else opts.timeout,
            "tags": call.tags if call.tags is not UNSET else opts.tags,
            "trace_context": (current_trace_context() if trace_context is UNSET
                              else trace_context),
        }

    @property
    def _connection(self) -> Any:
        return None if self._call.connection is UNSET else self._call.connection

    @property
    def _when_unreachable(self) -> str | None:
        mode = self._call.when_unreachable
        return None if isinstance(mode, _Unset) else mode

    # -- enqueue ------------------------------------------------------------------------
    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Store one job and return its handle. Nothing is written if anything is invalid."""
        return self.app.enqueue_jobs([self._prepare(args, kwargs)],
                                     connection=self._connection,
                                     when_unreachable=self._when_unreachable)[0]

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """`enqueue` for async code: the write runs in a thread, the event loop stays free."""
        job = self._prepare(args, kwargs)
        jobs: list[Job[R]] = await asyncio.to_thread(
            self.app.enqueue_jobs, [job], connection=self._connection,
            when_unreachable=self._when_unreachable,
        )
        return jobs[0]

    def enqueue_many(
        self, calls: Iterable[Call[P, R] | tuple[Any, ...] | Mapping[str, Any]]
    ) -> list[Job[R]]:
        """Store many jobs in one transaction. Items: `task.call(...)` (or
        `task.using(...).call(...)`, whose options win over this task's for that job), a tuple of
        positional arguments, or a dict of keyword arguments. All or nothing."""
        jobs: list[EnqueueJob] = []
        options: dict[str, Any] | None = None  # resolved once, at the first item
        context: Any = UNSET
        for i, item in enumerate(calls):
            if isinstance(item, Call):
                if item.task.name != self.name:
                    raise InvalidOptionError(
                        f"item {i} is a call of {item.task.name}, not of {self.name}"
                    )
                args, kwargs = item.args, item.kwargs
            elif isinstance(item, tuple):
                args, kwargs = item, {}
            elif isinstance(item, Mapping):
                args, kwargs = (), dict(item)
            else:
                raise InvalidOptionError(
                    f"item {i} of enqueue_many is a {type(item).__name__}: pass "
                    f"{self.name}.call(...), a tuple of arguments or a dict of keyword arguments"
                )
            self.check_arguments(args, kwargs)
            if context is UNSET:
                context = current_trace_context()  # one span for the batch
            own = self._item_options(item) if isinstance(item, Call) else None
            if own is not None:
                fields = own._options(context)
            else:
                if options is None:
                    options = self._options(context)
                fields = options
            jobs.append(EnqueueJob(args=tuple(args), kwargs=dict(kwargs), **fields))
        if not jobs:
            return []
        return self.app.enqueue_jobs(
            jobs, connection=self._connection, when_unreachable=self._when_unreachable
        )

    def _item_options(self, item: Call[P, R]) -> Task[P, R] | None:
        """The task whose options a `task.using(...).call()` item of this task's batch
        takes: the batch's, with the ones the item set itself (delay or run_at replacing
        the other); None when the item set none. The connection and `when_unreachable`
        are the batch's."""
        own = {f.name: getattr(item.task._call, f.name) for f in dataclass_fields(_CallOptions)
               if f.name not in ("connection", "when_unreachable")
               and getattr(item.task._call, f.name) is not UNSET}
        if not own:
            return None
        if "delay" in own:
            own.setdefault("run_at", UNSET)
        if "run_at" in own:
            own.setdefault("delay", UNSET)
        return Task(self.app, self.fn, self.name, self.options, replace(self._call, **own),
                    checker=self.checker)

    async def aenqueue_many(
        self, calls: Iterable[Call[P, R] | tuple[Any, ...] | Mapping[str, Any]]
    ) -> list[Job[R]]:
        items = list(calls)
        return await asyncio.to_thread(self.enqueue_many, items)


def job_insert(job: EnqueueJob, *, check: bool, client_id: str | None = None) -> JobInsert:
    """The backend's form of a job: arguments encoded as JSON text.

    `check`: check the arguments again (a middleware may have replaced them)."""
    if check and not all(isinstance(t, str) for t in job.tags):
        raise InvalidOptionError(f"tags must be a list of str, got {job.tags!r}")
    return JobInsert(
        task=job.task,
        queue=job.queue,
        args_json=jsonvalue.encode_arguments(
            job.args, job.kwargs, job.task, structure_checked=not check
        ),
        priority=job.priority,
        max_attempts=job.max_attempts,
        delay=job.delay,
        run_at=None if job.run_at is None else job.run_at.timestamp(),
        idempotency_key=job.idempotency_key,
        idempotency_window=job.idempotency_window,
        group_key=job.group,
        timeout=job.timeout,
        tags=tuple(job.tags),
        trace_context=job.trace_context,
        client_id=client_id,
        limit_name=job.limit_name,
        limit_key=job.limit_key,
    )


def build_options(
    *,
    queue: str | None,
    priority: int | None,
    max_attempts: int | None,
    retry: RetryPolicy | None,
    timeout: float | None,
    dont_retry: Iterable[type[BaseException]],
    retry_on: Iterable[type[BaseException]],
    tags: Iterable[str],
    breaker: CircuitBreaker | None = None,
    retry_budget: RetryBudget | Literal[False] | None = None,
    limit: str | None = None,
) -> TaskOptions:
    """Validate the decorator's options once, at import, with errors that say what to write."""
    try:
        return TaskOptions(
            queue=None if queue is None else check_queue(queue),
            priority=None if priority is None else check_priority(priority),
            max_attempts=None if max_attempts is None else check_max_attempts(max_attempts),
            retry=_check_retry(retry),
            timeout=check_timeout(timeout),
            dont_retry=_check_exceptions(dont_retry, "dont_retry"),
            retry_on=_check_exceptions(retry_on, "retry_on"),
            tags=tuple(tags),
            breaker=_check_breaker(breaker),
            retry_budget=_check_retry_budget(retry_budget),
            limit=None if limit is None else check_limit_name(limit),
        )
    except InvalidOptionError as exc:
        raise ConfigurationError(str(exc)) from exc


def _check_retry(retry: RetryPolicy | None) -> RetryPolicy | None:
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(
            f"retry= must be a conveyor.Retry or another RetryPolicy (an object with a "
            f"delay(attempt) method), got {retry!r}"
        )
    return retry


def _check_breaker(breaker: CircuitBreaker | None) -> CircuitBreaker | None:
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise ConfigurationError(f"breaker= must be a conveyor.CircuitBreaker, got {breaker!r}")
    return breaker


def _check_retry_budget(
    budget: RetryBudget | Literal[False] | None,
) -> RetryBudget | Literal[False] | None:
    if budget is not None and budget is not False and not isinstance(budget, RetryBudget):
        raise ConfigurationError(
            f"retry_budget= must be a conveyor.RetryBudget, False (no budget) or None (the "
            f"app's), got {budget!r}"
        )
    return budget


def _check_exceptions(
    types: Iterable[type[BaseException]], name: str
) -> tuple[type[BaseException], ...]:
    found = tuple(types)
    for t in found:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ConfigurationError(f"{name}= takes exception classes, got {t!r}")
    return found
