"""Turning rows (any backend) into records, and checking what every backend stores.

Written once for both backends: each dialect hands its rows here (a dict, a
psycopg dict row or a sqlite3.Row; JSON as text or already decoded) and gets the
same dataclasses back. Reading never raises on a value that cannot be shown:
a time outside `datetime`'s range reads as its nearer end, text that cannot be
encoded reads with U+FFFD (see `conveyor.jsonvalue`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from conveyor.backends.base import (
    RUN_BUCKETS,
    WAIT_BUCKETS,
    AlertState,
    ApiToken,
    AuditEntry,
    EventEntry,
    IncidentRecord,
    InsertResult,
    JobFilter,
    JobInsert,
    JobStats,
    Role,
    WorkerInfo,
)
from conveyor.clock import MAX_AHEAD, check_run_at, to_datetime
from conveyor.errors import InvalidOptionError, SerializationError
from conveyor.jsonvalue import (
    check_text,
    dumps,
    json_text_storable,
    loads_readable,
    storable_text,
)
from conveyor.types import AttemptError, JobRecord, JobState

__all__ = ["dumps"]


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        return to_datetime(float(value))


def _json(value: Any) -> Any:
    # SQLite hands back JSON as text; psycopg decodes json and jsonb (with loads_readable).
    return loads_readable(value) if isinstance(value, str | bytes) else value


class RowLike(Protocol):
    """A row read by name: a dict, a psycopg dict row or a sqlite3.Row."""

    def __getitem__(self, key: str, /) -> Any: ...


def job_record_from_row(row: RowLike) -> JobRecord:
    args, kwargs = _json(row["args"])
    result = row["result"]
    created_at = _time(row["created_at"])
    run_at = _time(row["run_at"])
    assert created_at is not None and run_at is not None
    return JobRecord(
        id=int(row["id"]),
        task=row["task"],
        queue=row["queue"],
        args=list(args),
        kwargs=dict(kwargs),
        state=JobState(row["state"]),
        priority=int(row["priority"]),
        run_at=run_at,
        attempt=int(row["attempt"]),
        max_attempts=int(row["max_attempts"]),
        lease_owner=row["lease_owner"],
        lease_expires_at=_time(row["lease_expires_at"]),
        lease_token=int(row["lease_token"]),
        idempotency_key=row["idempotency_key"],
        group_key=row["group_key"],
        timeout=None if row["timeout"] is None else float(row["timeout"]),
        created_at=created_at,
        started_at=_time(row["started_at"]),
        finished_at=_time(row["finished_at"]),
        result=None if result is None else _json(result),
        errors=[AttemptError.from_json(entry) for entry in _json(row["errors"])],
        tags=list(_json(row["tags"])),
        trace_context=_trace_context(row),
        limit_name=_optional(row, "limit_name"),
        limit_key=_optional(row, "limit_key"),
    )


def _optional(row: RowLike, column: str) -> Any:
    try:
        return row[column]
    except (KeyError, IndexError):  # a query that does not read it
        return None


def _trace_context(row: RowLike) -> dict[str, str] | None:
    try:
        value = row["trace_context"]
    except (KeyError, IndexError):  # a query that does not read it
        return None
    data = _json(value) if value is not None else None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


WAIT_COLUMNS = tuple(f"wait_le_{bound:g}".replace(".", "_") for bound in WAIT_BUCKETS)
"""The aggregate columns of each wait bucket: wait_le_0_1, wait_le_0_5, wait_le_1, …"""
RUN_COLUMNS = tuple(f"run_le_{bound:g}".replace(".", "_") for bound in RUN_BUCKETS)
"""The aggregate columns of each run-time bucket: run_le_0_01, run_le_0_025, …"""


def job_stats_from_row(row: RowLike) -> JobStats:
    minute = row["minute"]
    return JobStats(
        queue=row["queue"],
        task=row["task"],
        minute=None if minute is None else float(minute),
        succeeded=int(row["succeeded"] or 0),
        retried=int(row["retried"] or 0),
        dead=int(row["dead"] or 0),
        attempts=int(row["attempts"] or 0),
        wait_le=tuple(int(row[column] or 0) for column in WAIT_COLUMNS),
        run_seconds=float(row["run_seconds"] or 0.0),
        run_le=tuple(int(row[column] or 0) for column in RUN_COLUMNS),
    )


def audit_entry_from_row(row: RowLike) -> AuditEntry:
    params = _json(row["params"])
    return AuditEntry(
        id=int(row["id"]),
        at=float(row["at"]),
        actor=str(row["actor"]),
        source=str(row["source"]),
        action=str(row["action"]),
        target=str(row["target"]),
        count=int(row["count"]),
        params=params if isinstance(params, dict) else {},
    )


def event_from_row(row: RowLike) -> EventEntry:
    return EventEntry(
        id=int(row["id"]), at=float(row["at"]), kind=str(row["kind"]),
        subject=str(row["subject"]), actor=str(row["actor"]), details=_dict(row["details"]),
    )


def incident_from_row(row: RowLike) -> IncidentRecord:
    closed_at = row["closed_at"]
    return IncidentRecord(
        id=int(row["id"]), opened_at=float(row["opened_at"]),
        closed_at=None if closed_at is None else float(closed_at), title=str(row["title"]),
        alert_key=None if row["alert_key"] is None else str(row["alert_key"]),
        opened_by=str(row["opened_by"]),
        closed_by=None if row["closed_by"] is None else str(row["closed_by"]),
        details=_dict(row["details"]), close_details=_dict(row["close_details"]),
    )


def interleave(candidates: list[list[int]], limit: int) -> list[int]:
    """Take up to `limit` ids round-robin from per-queue candidate lists.

    Each list is already in that queue's order (priority, run_at, id). The
    first job of every queue comes before the second job of any queue, so a
    backlog in one queue cannot starve another; ties go to the queue listed first.
    """
    picked: list[int] = []
    rank = 0
    while len(picked) < limit:
        took = False
        for ids in candidates:
            if rank < len(ids):
                picked.append(ids[rank])
                took = True
                if len(picked) == limit:
                    break
        if not took:
            break
        rank += 1
    return picked


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def token_from_row(row: RowLike) -> ApiToken:
    role: Role = row["role"]
    return ApiToken(
        id=int(row["id"]), name=row["name"], token_hash=row["token_hash"], role=role,
        tasks=[str(t) for t in _json(row["tasks"])], queues=[str(q) for q in _json(row["queues"])],
        created_at=float(row["created_at"]),
        last_used_at=_float_or_none(row["last_used_at"]),
        revoked_at=_float_or_none(row["revoked_at"]),
        expires_at=_float_or_none(row["expires_at"]),
        expired=bool(row["expired"]),
    )


def _dict(value: Any) -> dict[str, Any]:
    data = _json(value)
    return data if isinstance(data, dict) else {}


def alert_from_row(row: RowLike) -> AlertState:
    return AlertState(key=row["key"], firing=bool(row["firing"]),
                      changed_at=float(row["changed_at"]), details=_dict(row["details"]))


def worker_from_row(row: RowLike) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"], hostname=row["hostname"], pid=int(row["pid"]),
        queues=[str(q) for q in _json(row["queues"])], concurrency=int(row["concurrency"]),
        started_at=float(row["started_at"]),
        last_heartbeat_at=float(row["last_heartbeat_at"]),
        running=int(row["running"]), meta=_dict(row["meta"]),
    )


def filter_params(
    filter: JobFilter, lists: Callable[[list[Any]], Any] = list
) -> dict[str, Any]:
    """The named parameters of the job filter queries; `lists` encodes a list as the
    dialect takes it (an array for PostgreSQL, JSON text for SQLite)."""
    return {
        "states": lists([str(s) for s in filter.states]) if filter.states else None,
        "queue": filter.queue,
        "task": filter.task,
        "ids": lists(list(filter.ids)) if filter.ids else None,
        "before_id": filter.before_id,
        "limit": filter.limit,
        "created_after": filter.created_after,
        "created_before": filter.created_before,
        "error_text": filter.error_text or None,
    }


def check_insert(job: JobInsert) -> None:
    """Refuse, before anything is written, a job one backend could not store or read
    back: the same rules on every backend (see `conveyor.jsonvalue`)."""
    texts = [job.task, job.queue, job.idempotency_key or "", job.group_key or "", *job.tags]
    if not storable_text("".join(texts)):  # one scan; name the culprit only when needed
        check_text(job.task, "the task name")
        check_text(job.queue, "the queue name")
        check_text(job.idempotency_key, "the idempotency key")
        check_text(job.group_key, "the group key")
        for tag in job.tags:
            check_text(tag, "the tag")
    check_insert_arguments(job)
    if not 0.0 <= job.delay <= MAX_AHEAD:  # also refuses NaN
        raise InvalidOptionError(
            f"delay must be from 0 to {MAX_AHEAD:.0f} seconds (100 years), got {job.delay!r}"
        )
    if job.run_at is not None:
        check_run_at(job.run_at)


def check_insert_arguments(job: JobInsert) -> None:
    """The part of `check_insert` that differs between the jobs of a bulk whose options
    are all alike: their arguments."""
    if not json_text_storable(job.args_json):
        raise SerializationError(
            f"arguments of {job.task!r} hold a NUL character or a lone surrogate, which "
            "cannot be stored: encode binary data (e.g. base64) before enqueueing"
        )


def resolved(
    jobs: Sequence[JobInsert],
    by_client_id: Iterable[RowLike],
    by_key: Callable[[JobInsert], RowLike | None],
) -> list[InsertResult | None]:
    """What became of jobs after an ambiguous insert: each found by its client id (so
    this insert created it), else by its idempotency key (it was there before), else
    None. `by_client_id`: the rows (`client_id`, `id`, `state`) the look-up found."""
    found = {
        str(row["client_id"]): InsertResult(int(row["id"]), True, JobState(row["state"]))
        for row in by_client_id
    }
    results: list[InsertResult | None] = []
    for job in jobs:
        result = found.get(job.client_id) if job.client_id is not None else None
        if result is None and job.idempotency_key is not None:
            row = by_key(job)
            if row is not None:
                result = InsertResult(int(row["id"]), False, JobState(row["state"]))
        results.append(result)
    return results
