"""`ConveyorBackend`: Django's task framework (`django.tasks`) running on conveyor.

Every Django task becomes one conveyor job of the task `django.tasks.run`,
whose arguments name the task function (by import path) and carry its JSON
arguments; the result id is the job id. See docs/django.md.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone
from django.utils.module_loading import import_string

from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.events import EventName, JobEvent
from conveyor.types import JobRecord, JobState

from ._compat import (
    BaseTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)

T = TypeVar("T")

RUNNER = "django.tasks.run"
"""The conveyor task every Django task runs through."""

_STATUS: dict[JobState, Any] = {
    JobState.SCHEDULED: TaskResultStatus.READY,
    JobState.AVAILABLE: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobState.DEAD: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}

_current = threading.local()
"""The attempt this worker thread runs now (set by the `started` event)."""


def conveyor_priority(priority: int) -> int:
    """Django's -100 (last) .. 100 (first) onto conveyor's 9 (last) .. 0 (first); 0 is 5."""
    return min(9, max(0, round(5 - priority / 20)))


def database_url(alias: str) -> str:
    """The conveyor URL of Django's database `alias` (SQLite file or PostgreSQL)."""
    try:
        db = settings.DATABASES[alias]
    except KeyError:
        raise ConfigurationError(
            f"TASKS OPTIONS name DATABASE {alias!r}, which is not in settings.DATABASES"
        ) from None
    engine = str(db.get("ENGINE", ""))
    name = str(db.get("NAME", ""))
    if engine.endswith("sqlite3"):
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ConfigurationError(
                f"database {alias!r} is in memory: conveyor needs a file (or set OPTIONS URL)"
            )
        import os

        return f"sqlite:///{os.path.abspath(name)}"
    if "postgresql" in engine:
        user = quote(str(db.get("USER") or ""), safe="")
        password = quote(str(db.get("PASSWORD") or ""), safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = str(db.get("HOST") or "")
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgresql://{auth}{host}{port}/{quote(name, safe='')}"
    raise ConfigurationError(
        f"database {alias!r} uses {engine!r}: conveyor runs on SQLite or PostgreSQL; set "
        "OPTIONS URL to a conveyor database"
    )


class ConveyorBackend(BaseTaskBackend):
    """A `TASKS` backend that stores Django tasks as conveyor jobs.

        TASKS = {"default": {
            "BACKEND": "conveyor.contrib.django.ConveyorBackend",
            "QUEUES": ["default", "mail"],
            "OPTIONS": {"DATABASE": "default"},
        }}

    OPTIONS: `DATABASE` (default "default"): the Django database whose file or
    PostgreSQL database holds the jobs, and whose `transaction.atomic()` an
    enqueue joins; `URL`: a conveyor URL instead (then set `DATABASE: None`
    unless it is the same database); `MAX_ATTEMPTS` (default 1: a failed task
    is FAILED, as Django describes); `SETTINGS`: keyword arguments for `Conveyor`.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        self.database: str | None = options.get("DATABASE", "default")
        url = options.get("URL") or (database_url(self.database) if self.database else None)
        if not url:
            raise ConfigurationError(
                f"TASKS[{alias!r}]: set OPTIONS DATABASE (a Django database) or URL"
            )
        self.conveyor = Conveyor(str(url), **dict(options.get("SETTINGS", {})))
        self.conveyor.task(name=RUNNER, max_attempts=int(options.get("MAX_ATTEMPTS", 1)))(
            run_django_task
        )
        self.conveyor.events.subscribe(_on_started, wants=_wants_started)

    # -- enqueue ------------------------------------------------------------------------
    def _join(self) -> Any:
        """Django's own connection when inside `transaction.atomic()`, else None."""
        if self.database is None:
            return None
        connection = connections[self.database]
        if not connection.in_atomic_block:
            return None
        connection.ensure_connection()
        return connection.connection

    def _handle(self, task: Task[Any, Any], connection: Any) -> Any:
        options: dict[str, Any] = {
            "queue": task.queue_name,
            "priority": conveyor_priority(task.priority),
        }
        if task.run_after is not None:
            run_after = task.run_after
            if timezone.is_naive(run_after):
                run_after = timezone.make_aware(run_after)
            options["run_at"] = run_after
        if connection is not None:
            options["connection"] = connection
        return self.conveyor.get_task(RUNNER).using(**options)

    def enqueue(self, task: Task[Any, T], args: Any, kwargs: Any) -> TaskResult[T]:
        self.validate_task(task)
        run_after = None if task.run_after is None else task.run_after.isoformat()
        job = self._handle(task, self._join()).enqueue(
            task.module_path, list(args), dict(kwargs), self.alias, task.priority, run_after
        )
        result: TaskResult[T] = TaskResult(
            task=task, id=str(job.id), status=cast(Any, TaskResultStatus.READY),
            enqueued_at=timezone.now(), started_at=None, finished_at=None,
            last_attempted_at=None, args=list(args), kwargs=dict(kwargs), backend=self.alias,
            errors=[], worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    # -- results ------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult[Any]:
        try:
            job_id = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        record = self.conveyor.backend.job_get(job_id)
        if record is None or record.task != RUNNER:
            raise TaskResultDoesNotExist(result_id)
        return result_of(record)


def _wants_started(name: EventName) -> bool:
    return name is EventName.STARTED


def _on_started(event: JobEvent) -> None:
    if event.task == RUNNER:
        _current.job_id = event.job_id


def _task_at(path: str) -> Task[Any, Any]:
    found = import_string(path)
    if not isinstance(found, Task):
        raise ConfigurationError(
            f"{path} is not a Django task (found {type(found).__name__}): was @task removed?"
        )
    return found


def result_of(record: JobRecord) -> TaskResult[Any]:
    """The Django view of a conveyor job of `RUNNER`."""
    path, args, kwargs, alias, priority, run_after = record.args
    task = _task_at(str(path)).using(
        priority=int(str(priority)),
        queue_name=record.queue,
        backend=str(alias),
        run_after=None if run_after is None else datetime.fromisoformat(str(run_after)),
    )
    workers = {e.attempt: e.worker for e in record.errors}
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=str(record.id),
        status=_STATUS[record.state],
        enqueued_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        last_attempted_at=record.started_at,
        args=list(cast(list[Any], args)),
        kwargs=dict(cast(dict[str, Any], kwargs)),
        backend=str(alias),
        errors=[TaskError(exception_class_path=e.type, traceback=e.traceback)
                for e in record.errors],
        worker_ids=[workers.get(n) or record.lease_owner or "conveyor"
                    for n in range(1, record.attempt + 1)],
    )
    if record.state is JobState.SUCCEEDED:
        object.__setattr__(result, "_return_value", record.result)
    return result


def run_django_task(  # noqa: PLR0917 - the job's stored arguments, positional
    path: str, args: list[Any], kwargs: dict[str, Any], backend: str,
    priority: int = 0, run_after: str | None = None,
) -> Any:
    """Run one Django task in a conveyor worker (a thread of its thread pool)."""
    task = _task_at(path)
    owner = task_backends[backend]
    if not isinstance(owner, ConveyorBackend):
        raise ConfigurationError(f"TASKS[{backend!r}] is not a ConveyorBackend")
    close_old_connections()
    try:
        result = None
        if task.takes_context or task_started.receivers or task_finished.receivers:
            job_id = getattr(_current, "job_id", None)
            record = None if job_id is None else owner.conveyor.backend.job_get(job_id)
            if record is None:
                raise ConfigurationError(
                    "a Django task with context runs in conveyor's thread pool: start the "
                    "worker with `manage.py conveyor worker` (not --pool process)"
                )
            result = result_of(record)
            task_started.send(type(owner), task_result=result)
        try:
            if task.takes_context:
                assert result is not None
                value = task.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
        except BaseException as exc:
            if result is not None:
                object.__setattr__(result, "status", TaskResultStatus.FAILED)
                object.__setattr__(result, "finished_at", datetime.now(UTC))
                task_finished.send(type(owner), task_result=result)
            raise exc
        if result is not None:
            object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
            object.__setattr__(result, "finished_at", datetime.now(UTC))
            object.__setattr__(result, "_return_value", value)
            task_finished.send(type(owner), task_result=result)
        return value
    finally:
        close_old_connections()
