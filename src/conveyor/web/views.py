"""What the API and the dashboard show, read from the backend on every request.

Nothing here is kept in the web process between requests, so the history an
operator sees survives restarts of the web server (it lives in the database).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import (
    AuditEntry,
    Backend,
    JobFilter,
    OperatorRetry,
    QueueStats,
    StatsQuery,
)
from conveyor.redaction import shown_record
from conveyor.types import JobRecord, JobState

if TYPE_CHECKING:
    from conveyor.app import Conveyor

DLQ_SCAN_LIMIT = 10_000
"""Most dead jobs read to group the dead-letter queue (newest first)."""
THROUGHPUT_WINDOW = 3600.0
THROUGHPUT_BUCKET = 60.0


def iso(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, tz=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def job_json(record: JobRecord) -> dict[str, Any]:
    """A job as the API and dashboard show it: secrets redacted, ciphertext by key id."""
    record = shown_record(record)
    return {
        "id": record.id,
        "task": record.task,
        "queue": record.queue,
        "state": str(record.state),
        "args": record.args,
        "kwargs": record.kwargs,
        "priority": record.priority,
        "attempt": record.attempt,
        "max_attempts": record.max_attempts,
        "run_at": iso(record.run_at),
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "idempotency_key": record.idempotency_key,
        "group": record.group_key,
        "timeout": record.timeout,
        "tags": record.tags,
        "limit": record.limit_name,
        "limit_key": record.limit_key,
        "result": record.result,
        "errors": [
            {"attempt": e.attempt, "type": e.type, "message": e.message,
             "traceback": e.traceback, "worker": e.worker, "at": iso(e.at)}
            for e in record.errors
        ],
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "at": iso(entry.at), "actor": entry.actor, "source": entry.source,
        "action": entry.action, "target": entry.target, "count": entry.count,
        "params": entry.params,
    }


# -- dead-letter groups ---------------------------------------------------------------
_VOLATILE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"0x[0-9a-f]+", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
]


def normalise_message(message: str) -> str:
    """A message with ids, numbers and quoted values blanked, so one bug is one group."""
    text = " ".join(message.split())[:500]
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def fingerprint(error_type: str, message: str) -> str:
    digest = hashlib.sha256(f"{error_type}\n{normalise_message(message)}".encode())
    return digest.hexdigest()[:16]


@dataclass
class DeadGroup:
    fingerprint: str
    error_type: str
    message: str
    """The normalised message shared by the group."""
    example: str
    """One real message of the group (the newest)."""
    tasks: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    job_ids: list[int] = field(default_factory=list)
    newest: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "error_type": self.error_type,
            "message": self.message,
            "example": self.example,
            "tasks": sorted(self.tasks),
            "queues": sorted(self.queues),
            "count": len(self.job_ids),
            "job_ids": self.job_ids[:100],
            "newest_finished_at": iso(self.newest),
        }


def last_error_of(record: JobRecord) -> tuple[str, str]:
    if not record.errors:
        return "(no error recorded)", ""
    last = record.errors[-1]
    return last.type, last.message


def dead_groups(
    backend: Backend, *, task: str | None = None, queue: str | None = None
) -> tuple[list[DeadGroup], bool]:
    """Dead jobs grouped by last error type and message fingerprint, biggest group first.

    Returns (groups, truncated): truncated when more dead jobs exist than were read.
    """
    records = backend.job_list(
        JobFilter(states=[JobState.DEAD], task=task, queue=queue, limit=DLQ_SCAN_LIMIT + 1)
    )
    truncated = len(records) > DLQ_SCAN_LIMIT
    groups: dict[str, DeadGroup] = {}
    for record in records[:DLQ_SCAN_LIMIT]:
        error_type, message = last_error_of(record)
        key = fingerprint(error_type, message)
        group = groups.get(key)
        if group is None:
            group = groups[key] = DeadGroup(
                key, error_type, normalise_message(message), message[:500]
            )
        group.tasks.add(record.task)
        group.queues.add(record.queue)
        group.job_ids.append(record.id)
        if record.finished_at is not None and (
            group.newest is None or record.finished_at > group.newest
        ):
            group.newest = record.finished_at
    ordered = sorted(groups.values(), key=lambda g: (-len(g.job_ids), g.fingerprint))
    return ordered, truncated


def group_job_ids(
    backend: Backend, fingerprint_value: str, *, task: str | None, queue: str | None
) -> list[int]:
    groups, _ = dead_groups(backend, task=task, queue=queue)
    for group in groups:
        if group.fingerprint == fingerprint_value:
            return list(group.job_ids)
    return []


# -- queues and workers -----------------------------------------------------------------
@dataclass
class QueueView:
    name: str
    counts: dict[str, int]
    oldest_waiting_seconds: float | None
    paused: bool
    paused_at: str | None
    workers: int
    throughput: list[tuple[int, int, int]]
    """(succeeded, retried, dead) attempts per minute over the last hour, oldest first,
    from the durable per-minute aggregates."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "counts": self.counts,
            "oldest_waiting_seconds": self.oldest_waiting_seconds,
            "paused": self.paused,
            "paused_at": self.paused_at,
            "workers": self.workers,
            "finished_last_hour": {
                "succeeded": sum(s for s, _, _ in self.throughput),
                "dead": sum(d for _, _, d in self.throughput),
            },
        }


def slo_rows(conveyor: Conveyor) -> list[dict[str, Any]]:
    """Every declared objective's SLIs with their error budget (from the shared read model)."""
    rows = []
    for status in conveyor.insights.slo():
        row = status.to_json()
        row["budget_left_clamped"] = max(0.0, min(1.0, status.budget_left))
        rows.append(row)
    return rows


def alive_window(lease: float) -> float:
    return max(60.0, 2 * lease)


def queue_views(backend: Backend, lease: float) -> list[QueueView]:
    stats: dict[str, QueueStats] = {s.queue: s for s in backend.queue_stats()}
    paused = {p.queue: p for p in backend.queue_pause_list()}
    workers = backend.worker_list(alive_window(lease))
    now = backend.now()
    buckets = int(THROUGHPUT_WINDOW // THROUGHPUT_BUCKET)
    until = (now // 60.0) * 60.0 + 60.0  # the current minute included
    since = until - buckets * THROUGHPUT_BUCKET
    series: dict[str, list[list[int]]] = defaultdict(lambda: [[0, 0, 0] for _ in range(buckets)])
    for row in backend.stats_read(StatsQuery(since=since, until=until, per_minute=True)):
        index = int(((row.minute or since) - since) // THROUGHPUT_BUCKET)
        if 0 <= index < buckets:
            cell = series[row.queue][index]
            cell[0] += row.succeeded
            cell[1] += row.retried
            cell[2] += row.dead
    names = sorted(set(stats) | set(paused) | {q for w in workers for q in w.queues})
    views = []
    for name in names:
        stat = stats.get(name)
        counts = {str(state): 0 for state in JobState}
        if stat is not None:
            counts.update({str(state): n for state, n in stat.counts.items()})
        pause = paused.get(name)
        views.append(QueueView(
            name=name,
            counts=counts,
            oldest_waiting_seconds=None if stat is None else stat.oldest_available_age,
            paused=pause is not None,
            paused_at=None if pause is None else iso(pause.paused_at),
            workers=sum(1 for w in workers if name in w.queues),
            throughput=[(s, r, d) for s, r, d in series[name]],
        ))
    return views


def sparkline(
    points: Sequence[tuple[int, int, int]], width: int = 240, height: int = 36
) -> dict[str, Any]:
    """Bar geometry for a small server-rendered SVG chart of the last hour: one bar per
    minute, stacked succeeded / retried / dead; a minute with nothing finished draws no
    bar over the baseline (so an idle hour is a line, not a box)."""
    peak = max((s + r + d for s, r, d in points), default=0)
    scale = peak or 1
    step = width / max(1, len(points))
    bars = []
    for i, (succeeded, retried, dead) in enumerate(points):
        y = float(height)
        parts = []
        for value, css in ((succeeded, "ok"), (retried, "retry"), (dead, "dead")):
            if value:
                h = max(value / scale * (height - 2), 1.0)
                y -= h
                parts.append({"y": round(y, 2), "h": round(h, 2), "css": css})
        if parts:
            bars.append({
                "x": round(i * step, 2), "w": round(max(step - 1, 1), 2), "parts": parts,
                "label": f"{len(points) - 1 - i} min ago: {succeeded} succeeded, "
                         f"{retried} retried, {dead} dead",
            })
    total = sum(s + r + d for s, r, d in points)
    return {"width": width, "height": height, "bars": bars, "peak": peak, "total": total}


def attempt_history(
    errors: Sequence[dict[str, Any]], retries: Sequence[OperatorRetry]
) -> list[dict[str, Any]]:
    """A job's failed attempts with its operator retries between them, oldest first.

    An operator retry starts a fresh set of attempts (numbers begin again at 1): its
    entry goes after the failed attempts the history held when it was made, and the
    attempts are numbered by run (`run` 1 before the first retry, 2 after it, ...)."""
    history: list[dict[str, Any]] = []
    marks = sorted(retries, key=lambda r: r.after_errors)
    m = 0
    for index, error in enumerate(errors):
        while m < len(marks) and marks[m].after_errors <= index:
            history.append(_retry_entry(marks[m], m))
            m += 1
        history.append({"kind": "attempt", "run": m + 1, **error})
    for k in range(m, len(marks)):
        history.append(_retry_entry(marks[k], k))
    return history


def _retry_entry(mark: OperatorRetry, index: int) -> dict[str, Any]:
    return {"kind": "retry", "run": index + 2, "at": iso(mark.at),
            "actor": mark.actor or "(not recorded)"}
