"""conveyor: background jobs for Python that fail well.

    from conveyor import Conveyor

    app = Conveyor()                      # CONVEYOR_URL, or sqlite:///conveyor.db

    @app.task(max_attempts=5)
    def send_email(to: str, subject: str) -> str: ...

    job = send_email.enqueue("a@example.com", subject="hi")

Then run `conveyor worker myapp.tasks:app`.
"""

from conveyor.app import Conveyor
from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    CancelRequested,
    ConfigurationError,
    ConveyorError,
    Discard,
    EncryptionError,
    EncryptionKeyMissing,
    EnqueueError,
    EnqueueOutcomeUnknown,
    InvalidArgumentsError,
    InvalidOptionError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    LeaseLost,
    NotStoredError,
    NotWaitingError,
    OperationError,
    RetryAfter,
    SchemaError,
    SerializationError,
    SignalTimeout,
    SpoolFullError,
    StepError,
    StepFailed,
    StepTimeout,
    UnknownTaskError,
    WaitTimeout,
    WorkflowCycleError,
)
from conveyor.job import Job
from conveyor.middleware import Attempt, AttemptResult, EnqueueJob, Middleware
from conveyor.retry import CircuitBreaker, Retry, RetryBudget, RetryPolicy
from conveyor.steps import JobContext
from conveyor.task import Task
from conveyor.types import AttemptError, JobRecord, JobState
from conveyor.worker import Worker
from conveyor.workflow import Workflow, WorkflowHandle, batch, chain, chord, group

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "AttemptError",
    "AttemptResult",
    "BackendError",
    "BackendUnavailable",
    "CancelRequested",
    "CircuitBreaker",
    "ConfigurationError",
    "Conveyor",
    "ConveyorError",
    "Discard",
    "EncryptionError",
    "EncryptionKeyMissing",
    "EnqueueError",
    "EnqueueJob",
    "EnqueueOutcomeUnknown",
    "InvalidArgumentsError",
    "InvalidOptionError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "LeaseLost",
    "Middleware",
    "NotStoredError",
    "NotWaitingError",
    "OperationError",
    "Retry",
    "RetryAfter",
    "RetryBudget",
    "RetryPolicy",
    "SchemaError",
    "SerializationError",
    "SignalTimeout",
    "SpoolFullError",
    "StepError",
    "StepFailed",
    "StepTimeout",
    "Task",
    "UnknownTaskError",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowCycleError",
    "WorkflowHandle",
    "batch",
    "chain",
    "chord",
    "group",
]
