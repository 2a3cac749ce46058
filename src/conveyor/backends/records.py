"""Turning a job row (any backend) into a `JobRecord`, and the JSON every backend stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

from conveyor.backends.base import WAIT_BUCKETS, AuditEntry, JobStats
from conveyor.types import AttemptError, JobRecord, JobState


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def _json(value: Any) -> Any:
    # SQLite hands back JSON as text; psycopg already decodes jsonb.
    return json.loads(value) if isinstance(value, str | bytes) else value


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
    )


def _trace_context(row: RowLike) -> dict[str, str] | None:
    try:
        value = row["trace_context"]
    except (KeyError, IndexError):  # a query that does not read it
        return None
    data = _json(value) if value is not None else None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


WAIT_COLUMNS = tuple(f"wait_le_{bound:g}".replace(".", "_") for bound in WAIT_BUCKETS)
"""The aggregate columns of each wait bucket: wait_le_0_1, wait_le_0_5, wait_le_1, …"""


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


def dumps(value: Any) -> str:
    """Compact JSON, as stored."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


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
