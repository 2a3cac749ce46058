"""`Job`: the handle `enqueue` returns. A thin view over one row, re-read on demand."""

from __future__ import annotations

import time
from typing import Any, Generic, Protocol, TypeVar, cast

from conveyor.errors import JobCancelled, JobFailed, JobNotFound, WaitTimeout
from conveyor.types import JobRecord, JobState

R = TypeVar("R")


class JobReader(Protocol):
    """The one backend role a job handle needs: read its row, cancel it."""

    def job_get(self, job_id: int) -> JobRecord | None: ...

    def job_cancel(self, job_id: int) -> bool: ...

    def job_find_client_id(self, client_id: str) -> int | None: ...


class JobSource(Protocol):
    """Where a handle finds that role (the app): looked up on each use, so a handle
    outlives `app.close()` as the app does (its backend reopens on first use)."""

    @property
    def backend(self) -> JobReader: ...

    def open_result(self, value: Any, task: str) -> Any:
        """A stored result as the task returned it (decrypted when it is encrypted)."""
        ...


class Job(Generic[R]):
    """A job by id. `state` and `record` are as of the last read; `refresh()` re-reads.

    A handle of a job written to the local spool (`spooled` True) has no `id` yet;
    `refresh()` finds the job by its `client_id` once the forwarder delivered it.
    """

    __slots__ = ("_record", "_source", "_state", "client_id", "created", "id", "spooled")

    def __init__(
        self,
        source: JobSource,
        job_id: int | None,
        state: JobState,
        *,
        created: bool = True,
        record: JobRecord | None = None,
        client_id: str | None = None,
        spooled: bool = False,
    ) -> None:
        self._source = source
        self.id = job_id
        """The database's id; None while the job waits in the local spool."""
        self._state = state
        self._record = record
        self.created = created
        """False when an idempotency key returned an existing job instead of a new one."""
        self.client_id = client_id
        """The id the enqueuing client gave the job (unique in the database)."""
        self.spooled = spooled
        """True when the database did not answer in time and the job was written to the
        local spool; it becomes False once `refresh()` finds it in the database."""

    def __repr__(self) -> str:
        if self.id is None:
            return f"<Job spooled client_id={self.client_id}>"
        return f"<Job {self.id} {self._state}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job) or other._source is not self._source:
            return False
        if self.id is None or other.id is None:
            return self.client_id is not None and other.client_id == self.client_id
        return other.id == self.id

    def __hash__(self) -> int:
        return hash(self.client_id if self.id is None else self.id)

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def record(self) -> JobRecord:
        """The full row as of the last read (read now if never read)."""
        if self._record is None:
            self.refresh()
        assert self._record is not None
        return self._record

    def _stored_id(self) -> int:
        if self.id is None:
            found = None if self.client_id is None else (
                self._source.backend.job_find_client_id(self.client_id)
            )
            if found is None:
                raise JobNotFound(
                    f"job {self.client_id} is still in the local spool (the database has not "
                    "received it yet): try again later, or see `conveyor spool status`",
                    0,
                )
            self.id = found
            self.spooled = False
        return self.id

    def refresh(self) -> Job[R]:
        job_id = self._stored_id()
        record = self._source.backend.job_get(job_id)
        if record is None:
            raise JobNotFound(
                f"job {job_id} does not exist (never enqueued, or pruned after retention)",
                job_id,
            )
        self._record = record
        self._state = record.state
        return self

    @property
    def result(self) -> R:
        """The return value once succeeded (see `wait`); decrypted when it is encrypted."""
        record = self.record
        return cast(R, self._source.open_result(record.result, record.task))

    def wait(self, timeout: float | None = None, *, poll: float = 0.05) -> R:
        """Block until the job finishes; return its result or raise why it did not.

        Raises `JobFailed` (dead), `JobCancelled`, or `WaitTimeout` after `timeout`
        seconds (the job itself is untouched and may still finish later).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.005, poll)
        while True:
            self.refresh()
            record = self.record
            if record.state is JobState.SUCCEEDED:
                return cast(R, self._source.open_result(record.result, record.task))
            if record.state is JobState.DEAD:
                last = record.errors[-1] if record.errors else None
                summary = f"{last.type}: {last.message}" if last else "no error recorded"
                raise JobFailed(
                    f"job {record.id} ({record.task}) is dead after {record.attempt} attempt(s): "
                    f"{summary}",
                    record.id,
                    summary,
                )
            if record.state is JobState.CANCELLED:
                raise JobCancelled(f"job {record.id} ({record.task}) was cancelled", record.id)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"job {record.id} ({record.task}) is still {record.state} after {timeout}s"
                )
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(delay)
            delay = min(poll, max(delay, 0.001) * 2)

    def cancel(self) -> bool:
        """Cancel the job if it has not started; True if it was cancelled now."""
        cancelled = self._source.backend.job_cancel(self._stored_id())
        self.refresh()
        return cancelled


def job_from_record(source: JobSource, record: JobRecord) -> Job[Any]:
    return Job(source, record.id, record.state, record=record)
