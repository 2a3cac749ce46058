"""The job context: what a running task knows about its job, durable steps and waits.

A task that declares a parameter annotated `JobContext` is handed one by the
worker (it is no argument of the job: enqueue and the HTTP API never see it):

    @app.task()
    def research(ctx: JobContext, topic: str) -> dict:
        plan = ctx.step("plan", call_model, topic)            # runs once, result stored
        ctx.progress(0.5, "planned")
        answer = ctx.wait_for("approval", timeout=3600)       # gives the slot back
        return {"plan": plan, "approved": answer}

Steps: `ctx.step(name, fn, *args)` calls `fn(*args)` and stores its JSON result
(fenced by the lease token: a worker that lost the job records nothing) before
returning it; when the job runs again (a retry, a rescue after the worker died,
a resume after a wait) a finished step returns its stored result without calling
`fn`. A step is identified by its name; the same name with other arguments in one
job is a `StepError`. Durable waits (`sleep`, `wait_for`) raise `Suspend`, which
the executor turns into `AttemptResult.deferred`: the job goes back to
`scheduled`, its attempt not counted, and runs again from the top when it is
due, its finished steps replayed.

Where the context lives: in the process that runs the task. In the thread pool
it talks to the worker's backend; in the process pool the child talks to the
database over its own connection (the child loads the app, so it has one): no
channel through the parent, and a step recorded by a child is durable the moment
the call returns, even if the worker dies the next instant.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from conveyor.arguments import CONTEXT_MARKER
from conveyor.backends.base import JobContextRecord, StepRecord, StepSave
from conveyor.errors import (
    CancelRequested,
    ConfigurationError,
    LeaseLost,
    SignalTimeout,
    StepError,
    StepFailed,
    StepTimeout,
)
from conveyor.jsonvalue import check_json
from conveyor.middleware import MAX_DEFER, describe
from conveyor.retry import RetryPolicy

CANCEL_CHECK_INTERVAL = 0.2
"""Seconds between two reads of the cancel flag by `ctx.cancelled` (one small query)."""
METADATA_MAX_BYTES = 16 * 1024
"""Largest stored metadata of one job, as JSON."""
MAX_STEP_NAME = 200


class ContextStore(Protocol):
    """The backend calls a job context makes."""

    def step_list(self, job_id: int) -> list[StepRecord]: ...
    def step_save(self, step: StepSave) -> bool: ...
    def job_context(self, job_id: int) -> JobContextRecord | None: ...
    def job_report(
        self, job_id: int, lease_token: int, *, progress: float | None = None,
        message: str | None = None, set_progress: bool = False,
        metadata_json: str | None = None,
    ) -> bool | None: ...
    def now(self) -> float: ...


class Suspend(BaseException):
    """Raised by a durable wait to give the slot back for `seconds`; the executor turns it
    into `AttemptResult.deferred`. A BaseException so that a task's `except Exception`
    does not swallow it."""

    def __init__(
        self, seconds: float, reason: str, *, step: tuple[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.seconds = min(max(0.0, seconds), MAX_DEFER)
        self.step = step
        """A wait step not yet recorded, as (name, args digest): the worker records it in
        the transaction that gives the job back (one write for the whole first pass)."""


def _digest(parts: Any) -> str:
    return hashlib.sha256(
        json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:32]


class JobContext:
    """The running job, as its task sees it (see the module docstring)."""

    __conveyor_job_context__ = True
    __slots__ = (
        "_cancelled",
        "_checked_at",
        "_lock",
        "_metadata",
        "_steps",
        "_store",
        "_used",
        "_waits",
        "attempt",
        "deadline",
        "id",
        "lease_token",
        "max_attempts",
        "queue",
        "task",
    )

    def __init__(
        self, store: ContextStore, *, job_id: int, lease_token: int, task: str, queue: str,
        attempt: int, max_attempts: int, timeout: float | None,
    ) -> None:
        self._store = store
        self.id = job_id
        """The job's id."""
        self.lease_token = lease_token
        self.task = task
        self.queue = queue
        self.attempt = attempt
        """1 for the first attempt (durable waits do not count one)."""
        self.max_attempts = max_attempts
        self.deadline: float | None = None if timeout is None else time.time() + timeout
        """Epoch seconds by which this attempt must end (the task's timeout), or None."""
        self._lock = threading.Lock()
        self._steps: dict[str, StepRecord] | None = None
        self._used: dict[str, str] = {}
        self._waits = 0
        self._cancelled = False
        self._checked_at = -math.inf
        self._metadata: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<JobContext job={self.id} attempt={self.attempt} queue={self.queue!r}>"

    # -- progress, metadata, cancellation ------------------------------------------------
    def progress(self, fraction: float, message: str | None = None) -> None:
        """Store how far the job is (0 to 1) and what it is doing; shown by the API and
        the dashboard. Raises `LeaseLost` when the job is no longer this attempt's."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
            math.isfinite(fraction) and 0 <= fraction <= 1
        ):
            raise ConfigurationError(
                f"ctx.progress(fraction) takes a number from 0 to 1, got {fraction!r}"
            )
        if message is not None and (not isinstance(message, str) or len(message) > 1000):
            raise ConfigurationError("ctx.progress(message) must be a str of at most 1000 chars")
        self._report(progress=float(fraction), message=message, set_progress=True)

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The job's stored metadata (a copy)."""
        if self._metadata is None:
            record = self._store.job_context(self.id)
            self._metadata = dict(record.metadata) if record is not None else {}
        return dict(self._metadata)

    def set_metadata(self, **values: Any) -> None:
        """Merge `values` (JSON) into the job's stored metadata (at most 16 KiB)."""
        merged = {**self.metadata, **values}
        check_json(merged, "metadata")
        text = json.dumps(merged, separators=(",", ":"))
        if len(text.encode()) > METADATA_MAX_BYTES:
            raise ConfigurationError(
                f"job metadata is {len(text.encode())} bytes as JSON, more than "
                f"{METADATA_MAX_BYTES}: store small facts here, large results in a step"
            )
        self._report(metadata_json=text)
        self._metadata = merged

    def _report(self, **fields: Any) -> None:
        cancel = self._store.job_report(self.id, self.lease_token, **fields)
        if cancel is None:
            raise LeaseLost(
                f"job {self.id}: this attempt no longer owns the job (its lease expired or "
                "it was cancelled); stop its work"
            )
        if cancel:
            self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """True once an operator asked to cancel the job (read from the database at most
        every CANCEL_CHECK_INTERVAL seconds)."""
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._checked_at >= CANCEL_CHECK_INTERVAL:
            self._checked_at = now
            record = self._store.job_context(self.id)
            self._cancelled = record is not None and record.cancel_requested_at is not None
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise `CancelRequested` if the job was cancelled: let it propagate, and the job
        ends `cancelled`."""
        if self.cancelled:
            raise CancelRequested(f"job {self.id} was cancelled by an operator")

    # -- steps ------------------------------------------------------------------------
    def _recorded(self, *, fresh: bool = False) -> dict[str, StepRecord]:
        with self._lock:
            if self._steps is None or fresh:
                self._steps = {s.name: s for s in self._store.step_list(self.id)}
            return self._steps

    def _claim(self, name: str, digest: str) -> StepRecord | None:
        """The finished record of step `name`, or None; refuses a reused name."""
        if not isinstance(name, str) or not 0 < len(name) <= MAX_STEP_NAME:
            raise StepError(f"a step name is a str of 1 to {MAX_STEP_NAME} characters, "
                            f"got {name!r}")
        with self._lock:
            used = self._used.setdefault(name, digest)
        record = self._recorded().get(name)
        if used != digest or (record is not None and record.args_digest != digest):
            raise StepError(
                f"step {name!r} of job {self.id} was already used with other arguments: "
                "a step is known by its name, so give each distinct call its own name "
                "(e.g. f'fetch-{i}')"
            )
        return record

    def _save(self, save: StepSave) -> None:
        if not self._store.step_save(save):
            raise LeaseLost(
                f"job {self.id}: step {save.name!r} was not recorded because this attempt "
                "no longer owns the job (its lease expired and another worker took it, or "
                "it was cancelled); stop its work"
            )
        with self._lock:
            if self._steps is not None:
                self._steps[save.name] = StepRecord(
                    save.name, save.args_digest, save.status, save.result_json, None,
                    self.attempt, save.tries, time.time() - save.took, time.time(),
                )

    def _digest_args(self, name: str, args: tuple[Any, ...]) -> str:
        try:
            check_json(list(args), f"step {name!r} argument")
        except Exception as exc:
            raise StepError(
                f"step {name!r}: arguments must be JSON (they identify the step): "
                f"{describe(exc)}"
            ) from None
        return _digest(["step", list(args)])

    def _encode(self, name: str, value: Any) -> str:
        try:
            check_json(value, "result")
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
        except Exception as exc:
            raise StepError(
                f"step {name!r} returned a {type(value).__name__}, which is not JSON "
                f"({describe(exc)}); return lists, dicts, str, int, float, bool or None"
            ) from None

    def step(
        self, name: str, fn: Callable[..., Any], *args: Any, attempts: int = 1,
        retry: RetryPolicy | None = None, timeout: float | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> Any:
        """Run `fn(*args)` once for this job and return its (JSON) result.

        A step that finished in an earlier run of the job returns its stored result
        without calling `fn`. `attempts`: tries within this run, waiting
        `retry.delay(n)` seconds between them (no wait without a policy); `timeout`:
        seconds per try (`StepTimeout`). When every try failed, `StepFailed` (its cause
        the last error) fails the job's attempt, and the job's own retry policy decides.
        An async `fn` makes this return an awaitable: `await ctx.step(...)`.
        """
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise StepError(f"step {name!r}: attempts must be an int >= 1, got {attempts!r}")
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise StepError(f"step {name!r}: timeout must be seconds > 0, got {timeout!r}")
        digest = self._digest_args(name, args)
        if inspect.iscoroutinefunction(fn):
            return self._step_async(name, digest, fn, args, attempts=attempts, retry=retry,
                                    timeout=timeout, retry_on=retry_on)
        record = self._claim(name, digest)
        if record is not None and record.status == "done":
            return _decode(record.result_json)
        started = time.monotonic()
        for tried in range(1, attempts + 1):
            try:
                value = _call_with_timeout(fn, args, timeout, name)
                break
            except retry_on as exc:
                if tried >= attempts:
                    raise StepFailed(
                        f"step {name!r} failed on all {attempts} tries: {describe(exc)}"
                    ) from exc
                self._pause(retry, tried)
        text = self._encode(name, value)
        self._save(StepSave(self.id, self.lease_token, name, digest, "done", text,
                            tries=tried, took=time.monotonic() - started))
        return _decode(text)

    async def _step_async(
        self, name: str, digest: str, fn: Callable[..., Any], args: tuple[Any, ...], *,
        attempts: int, retry: RetryPolicy | None, timeout: float | None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...],
    ) -> Any:
        record = await asyncio.to_thread(self._claim, name, digest)
        if record is not None and record.status == "done":
            return _decode(record.result_json)
        started = time.monotonic()
        for tried in range(1, attempts + 1):
            try:
                try:
                    value = await asyncio.wait_for(fn(*args), timeout)
                except TimeoutError:
                    if timeout is None:
                        raise
                    raise StepTimeout(
                        f"step {name!r} ran past its timeout of {timeout}s"
                    ) from None
                break
            except retry_on as exc:
                if tried >= attempts:
                    raise StepFailed(
                        f"step {name!r} failed on all {attempts} tries: {describe(exc)}"
                    ) from exc
                await asyncio.sleep(_delay(retry, tried))
        text = self._encode(name, value)
        await asyncio.to_thread(self._save, StepSave(
            self.id, self.lease_token, name, digest, "done", text,
            tries=tried, took=time.monotonic() - started,
        ))
        return _decode(text)

    def _pause(self, retry: RetryPolicy | None, tried: int) -> None:
        deadline = time.monotonic() + _delay(retry, tried)
        while (left := deadline - time.monotonic()) > 0:
            self.check_cancelled()
            time.sleep(min(left, CANCEL_CHECK_INTERVAL))

    # -- durable waits ------------------------------------------------------------------
    def sleep(self, seconds: float, *, name: str | None = None) -> None:
        """Wait `seconds` without holding a worker slot: the job goes back to `scheduled`
        and runs again from the top when due (finished steps replayed), its attempt not
        counted. Waits are named `sleep-1`, `sleep-2`... in the order the code reaches
        them (give `name` when that order can change between runs)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
            math.isfinite(seconds) and 0 <= seconds <= MAX_DEFER
        ):
            raise ConfigurationError(
                f"ctx.sleep(seconds) takes 0 to {MAX_DEFER:.0f} seconds, got {seconds!r}"
            )
        self._waits += 1
        name = name or f"sleep-{self._waits}"
        digest = _digest(["sleep", float(seconds)])
        record = self._claim(name, digest)
        if record is not None and record.status == "done":
            return
        if record is not None and record.wake_at is not None:
            left = record.wake_at - self._store.now()
            if left <= 0:
                return  # over: its wake time is the record (no write on the way out)
            raise Suspend(left, f"sleeping in {name!r}")
        # Recorded by the worker with the give-back, in one transaction (fenced by the
        # lease like any step): its wake time is the database's now plus `seconds`.
        raise Suspend(float(seconds), f"sleeping in {name!r}", step=(name, digest))

    def wait_for(self, signal: str, timeout: float | None = None) -> Any:
        """Wait for `app.signal(job, signal, payload)` without holding a worker slot, and
        return the payload. After `timeout` seconds without it, `SignalTimeout`."""
        if not isinstance(signal, str) or not 0 < len(signal) <= MAX_STEP_NAME - 7:
            raise ConfigurationError(f"a signal name is a non-empty str, got {signal!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not math.isfinite(timeout) or not 0 < timeout <= MAX_DEFER
        ):
            raise ConfigurationError(
                f"ctx.wait_for(timeout) takes seconds > 0 (up to a year) or None, got "
                f"{timeout!r}"
            )
        name = f"signal:{signal}"
        digest = _digest(["signal", signal])
        record = self._claim(name, digest)
        if record is None or record.status != "done":
            record = self._recorded(fresh=True).get(name)  # a signal may have come meanwhile
        if record is not None and record.status == "done":
            return _decode(record.result_json)
        if record is not None and record.status == "signalled":
            self._save(StepSave(self.id, self.lease_token, name, digest, "done",
                                record.result_json))
            return _decode(record.result_json)
        if record is not None and record.wake_at is not None:
            left = record.wake_at - self._store.now()
            if left <= 0:
                raise SignalTimeout(
                    f"job {self.id}: no signal {signal!r} came within {timeout}s"
                )
            raise Suspend(left, f"waiting for signal {signal!r}")
        wait = MAX_DEFER if timeout is None else float(timeout)
        if not self._store.step_save(StepSave(
            self.id, self.lease_token, name, digest, "waiting", wake_in=wait
        )):
            # The signal came between our read and our write, or the job is not ours.
            record = self._recorded(fresh=True).get(name)
            if record is not None and record.status in ("signalled", "done"):
                return self.wait_for(signal, timeout)
            raise LeaseLost(f"job {self.id}: this attempt no longer owns the job")
        raise Suspend(wait, f"waiting for signal {signal!r}")


def _decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _delay(retry: RetryPolicy | None, tried: int) -> float:
    if retry is None:
        return 0.0
    delay = retry.delay(tried)
    return delay if math.isfinite(delay) and delay > 0 else 0.0


def _call_with_timeout(
    fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None, name: str
) -> Any:
    if timeout is None:
        return fn(*args)
    # A thread cannot be stopped: past the timeout the try is failed and the call is left
    # to finish on its own (its result is dropped).
    box: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn(*args))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name=f"conveyor-step-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise StepTimeout(f"step {name!r} ran past its timeout of {timeout}s")
    if error:
        raise error[0]
    return box[0]


def build_context(
    store: ContextStore, *, job_id: int, lease_token: int, task: str, queue: str,
    attempt: int, max_attempts: int, timeout: float | None,
) -> JobContext:
    return JobContext(store, job_id=job_id, lease_token=lease_token, task=task, queue=queue,
                      attempt=attempt, max_attempts=max_attempts, timeout=timeout)


assert getattr(JobContext, CONTEXT_MARKER)

__all__ = ["CANCEL_CHECK_INTERVAL", "ContextStore", "JobContext", "Suspend", "build_context"]
