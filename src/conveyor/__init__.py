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
    NotStoredError,
    OperationError,
    RetryAfter,
    SchemaError,
    SerializationError,
    SpoolFullError,
    UnknownTaskError,
    WaitTimeout,
    WorkflowCycleError,
)
from conveyor.job import Job
from conveyor.middleware import Attempt, AttemptResult, EnqueueJob, Middleware
from conveyor.retry import CircuitBreaker, Retry, RetryBudget, RetryPolicy
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
    "JobFailed",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "Middleware",
    "NotStoredError",
    "OperationError",
    "Retry",
    "RetryAfter",
    "RetryBudget",
    "RetryPolicy",
    "SchemaError",
    "SerializationError",
    "SpoolFullError",
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
