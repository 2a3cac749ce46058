"""Every exception conveyor raises, and the two control signals tasks may raise.

    ConveyorError
    ├── ConfigurationError        bad URL, bad option value, bad worker settings
    ├── EnqueueError              nothing was written
    │   ├── SerializationError    arguments are not JSON
    │   ├── InvalidArgumentsError arguments do not fit the task's signature
    │   ├── InvalidOptionError    unknown or out-of-range option (delay < 0, priority …)
    │   ├── WorkflowCycleError    a workflow's depends_on forms a cycle
    │   └── SpoolFullError        the local spool is full (or too old): back-pressure
    ├── OperationError            an operator action was refused (bad input); nothing changed
    │   └── NotWaitingError       a signal to a job that does not wait for it
    ├── UnknownTaskError          no task registered under that name
    ├── EncryptionError           an encrypted payload does not decrypt (altered, misplaced)
    │   └── EncryptionKeyMissing  its key id is not in this process's key ring
    ├── BackendError              the database failed us
    │   ├── BackendUnavailable    cannot connect within the connect timeout
    │   │   └── NotStoredError    the database did not answer in time: certainly not stored
    │   └── EnqueueOutcomeUnknown the one ambiguous case: may have been stored (client ids)
    │   └── SchemaError           schema missing or of an unknown version: run `conveyor migrate`
    ├── JobError                  raised by `Job.wait()`
    │   ├── JobFailed             the job ended `dead`
    │   ├── JobCancelled          the job ended `cancelled`
    │   └── JobNotFound           the job does not exist (never enqueued, or pruned)
    ├── WaitTimeout               `Job.wait(timeout=…)` ran out (also a `TimeoutError`)
    ├── StepError                 a durable step was misused or failed (the message says why)
    │   ├── StepFailed            its function failed on every try its retry policy allows
    │   └── StepTimeout           one try ran past the step's timeout (also a `TimeoutError`)
    ├── SignalTimeout             `ctx.wait_for(name, timeout)` ran out (also a `TimeoutError`)
    └── LeaseLost                 a step or report was refused: the job is no longer ours

    ControlSignal                 not failures: a task raises them to steer its own retries
    ├── RetryAfter(seconds)       retry at exactly this delay (e.g. a 429's Retry-After)
    ├── Discard(reason)           do not retry: the job goes to `dead` now
    └── CancelRequested           `ctx.check_cancelled()`: an operator cancelled the job

`TaskTimeout`, `LeaseExpired` and `ResultNotSerializable` are error types
recorded in a job's error history when an attempt ran out of time, its worker
vanished, or its return value could not be stored.
"""

from __future__ import annotations

from datetime import timedelta


class ConveyorError(Exception):
    """Base of every error conveyor raises."""


class ConfigurationError(ConveyorError):
    """A setting is wrong; the message says which and what to write instead."""


class EnqueueError(ConveyorError):
    """An enqueue was refused; nothing was written."""


class SerializationError(EnqueueError):
    """Task arguments (or a result) are not JSON-serialisable."""


class InvalidArgumentsError(EnqueueError):
    """The arguments do not fit the task function's signature.

    `argument` names the culprit (a parameter name, or a position for a surplus
    positional argument) and `where` says where it was given (`args/0`,
    `kwargs/user_id`), when known.
    """

    def __init__(self, message: str, *, argument: str | None = None,
                 where: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument
        self.where = where


class InvalidOptionError(EnqueueError):
    """An enqueue option is unknown or out of range."""


class WorkflowCycleError(EnqueueError):
    """A workflow's `depends_on` forms a cycle: no node of it could ever start."""


class OperationError(ConveyorError):
    """An operator or admin action (retry, cancel, purge, pause, tokens) was refused
    because its input is wrong; nothing was changed and nothing was audited."""


class UnknownTaskError(ConveyorError):
    """No task is registered under the given name."""


class EncryptionError(ConveyorError):
    """An encrypted job payload does not decrypt; recorded as the attempt's (final) error."""


class EncryptionKeyMissing(EncryptionError):
    """The payload names a key id this process's key ring does not hold."""

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class BackendError(ConveyorError):
    """The backend failed to carry out an operation."""


class BackendUnavailable(BackendError):
    """The database cannot be reached; nothing was written."""


class NotStoredError(BackendUnavailable):
    """The database did not answer within the enqueue deadline and nothing was stored:
    retrying (or enqueueing in `spool` mode) cannot make a duplicate. `client_ids`
    names the jobs that were not stored."""

    def __init__(self, message: str, client_ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.client_ids = client_ids or []


class EnqueueOutcomeUnknown(BackendError):
    """The write was sent, the connection broke, and the look-up by client id could not
    reach the database within its bound either: the jobs may have been stored.
    `client_ids` names them: look them up (or re-enqueue them with the same client
    ids through the spool) once the database answers."""

    def __init__(self, message: str, client_ids: list[str]) -> None:
        super().__init__(message)
        self.client_ids = client_ids


class SpoolFullError(EnqueueError):
    """The local spool holds its maximum of jobs, or its oldest job is older than its
    maximum age (the database has been unreachable too long): nothing was written."""


class SchemaError(BackendError):
    """The database schema is missing or at a version this code does not know."""


class JobError(ConveyorError):
    """Raised by `Job.wait()` when the job did not succeed."""

    def __init__(self, message: str, job_id: int) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailed(JobError):
    """The job ended `dead`; `last_error` holds the last attempt's error type and message."""

    def __init__(self, message: str, job_id: int, last_error: str | None = None) -> None:
        super().__init__(message, job_id)
        self.last_error = last_error


class JobCancelled(JobError):
    """The job was cancelled before it ran."""


class JobNotFound(JobError):
    """No job with this id exists (it was never enqueued or has been pruned)."""


class WaitTimeout(ConveyorError, TimeoutError):
    """`Job.wait()` gave up before the job finished; the job itself is untouched."""


class TaskTimeout(ConveyorError, TimeoutError):
    """Recorded in a job's history when an attempt exceeded the task's timeout."""


class LeaseExpired(ConveyorError):
    """Recorded in a job's history when its worker stopped heartbeating (crash, kill, pause)."""


class ResultNotSerializable(ConveyorError):
    """Recorded in a job's history when the task returned something that is not JSON.

    Not retried: the same code returns the same kind of value again.
    """


class NotWaitingError(OperationError):
    """A signal was sent to a job that is not waiting for it (see `ctx.wait_for`)."""


class StepError(ConveyorError):
    """A durable step was misused (name reused with other arguments, arguments or result
    not JSON) or could not finish; the message says which and what to change."""


class StepFailed(StepError):
    """A step's function failed on every try its retry policy allows (the last error is
    the `__cause__`)."""


class StepTimeout(StepError, TimeoutError):
    """One try of a step ran past the step's timeout."""


class SignalTimeout(ConveyorError, TimeoutError):
    """`ctx.wait_for(name, timeout)` ran out before the signal came."""


class LeaseLost(ConveyorError):
    """A step, progress report or wait was refused: this attempt no longer owns the job
    (its lease expired and another worker took it, or it was cancelled). The attempt
    stops; its outcome is not recorded."""


class ControlSignal(Exception):
    """Base of the signals a task raises to steer its own retries. Not a failure of conveyor."""


class RetryAfter(ControlSignal):
    """Ask for another attempt after `seconds` (float seconds or a timedelta).

    The attempt still counts toward `max_attempts`; when none are left the job
    goes to `dead` like any other failure.

    `limit`: also pause that flow-control limit for the whole fleet for `seconds`
    (a dependency said "slow down": HTTP 429 with Retry-After), or only its `key`.
    """

    def __init__(
        self, seconds: float | timedelta, reason: str = "", *, limit: str | None = None,
        key: str | None = None,
    ) -> None:
        delay = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if not delay >= 0 or delay == float("inf"):
            raise InvalidOptionError(
                f"RetryAfter needs a finite delay >= 0 seconds, got {seconds!r}"
            )
        if limit is not None and (not isinstance(limit, str) or not limit):
            raise InvalidOptionError(
                f"RetryAfter(limit=...) names a limit, e.g. 'stripe', got {limit!r}"
            )
        if key is not None and (limit is None or not isinstance(key, str)):
            raise InvalidOptionError("RetryAfter(key=...) needs limit= and a str key")
        super().__init__(reason or f"retry requested after {delay:g}s")
        self.seconds = delay
        self.reason = reason
        self.limit = limit
        self.key = key


class Discard(ControlSignal):
    """Stop retrying: the job goes to `dead` at once with this reason."""

    def __init__(self, reason: str = "discarded by the task") -> None:
        super().__init__(reason)
        self.reason = reason


class CancelRequested(ControlSignal):
    """Raised by `ctx.check_cancelled()` once an operator asked to cancel the running job:
    let it propagate, and the job ends `cancelled` (not retried, not dead)."""
