"""Named SQL, loaded once from the `.sql` files that sit beside each backend, and the
base class both SQL dialects share.

A query file holds one statement; its file name (without `.sql`) is its name.
Migrations are `migrations/NNNN_description.sql`, applied in number order.
No SQL is assembled from strings at run time.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from conveyor.backends.base import (
    AlertState,
    ApiToken,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    ErrorSummary,
    EventEntry,
    EventFilter,
    EventInsert,
    IncidentRecord,
    JobFilter,
    JobStats,
    QueuePause,
    QueueStats,
    StatsQuery,
    Throughput,
    TokenInsert,
    WorkerInfo,
)
from conveyor.backends.records import (
    RowLike,
    alert_from_row,
    audit_entry_from_row,
    dumps,
    event_from_row,
    filter_params,
    incident_from_row,
    job_stats_from_row,
    token_from_row,
    worker_from_row,
)
from conveyor.types import FINISHED_STATES, JobRecord, JobState

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_queries(package: str) -> dict[str, str]:
    """Every `queries/*.sql` of `package`, by name."""
    folder = resources.files(package).joinpath("queries")
    return {
        entry.name.removesuffix(".sql"): entry.read_text(encoding="utf-8").strip()
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


def load_migrations(package: str) -> list[Migration]:
    """Every `migrations/NNNN_*.sql` of `package`, oldest first."""
    folder = resources.files(package).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    # Numbers are reserved per feature, so one may be missing while it is being written;
    # they must still start at 1 and never repeat.
    if not versions or versions[0] != 1 or len(set(versions)) != len(versions):
        raise RuntimeError(
            f"migrations of {package} must be numbered from 1, once each: {versions}"
        )
    return found


class SQLBackend(ABC):
    """What both SQL dialects do alike, written once.

    A dialect supplies four primitives over its named queries (each query file
    exists in both dialects, with the same name, parameters and result columns)
    and overrides only what truly differs: transactions, the fetch and
    completion paths, notifications and time. Parameters a dialect's query does
    not use are ignored (SQLite is given `now` from its clock; PostgreSQL reads
    its own).
    """

    @abstractmethod
    def _rows(self, name: str, params: dict[str, Any]) -> Sequence[RowLike]:
        """Run the read query `name`; its rows."""

    @abstractmethod
    def _change(
        self, name: str, params: dict[str, Any], *, audit: AuditRecord | None = None,
        audit_target: Callable[[Sequence[RowLike]], str] | None = None,
    ) -> Sequence[RowLike]:
        """Run the write query `name` in a transaction of its own; its RETURNING rows.

        `audit`: written in the same transaction, counting the rows returned (its
        target from `audit_target(rows)` when given)."""

    @abstractmethod
    def _count(
        self, name: str, params: dict[str, Any], *, audit: AuditRecord | None = None
    ) -> int:
        """Run the write query `name` in a transaction of its own; how many rows it changed.

        `audit`: written in the same transaction, with that count."""

    @abstractmethod
    def _job_rows(self, name: str, params: dict[str, Any]) -> list[JobRecord]:
        """Run a query of whole job rows for an operator's read (never raising on a
        stored value it cannot show; see `records`)."""

    @staticmethod
    @abstractmethod
    def _array(values: list[Any]) -> Any:
        """A list as the dialect's queries take it (an array, or JSON text)."""

    # -- jobs -------------------------------------------------------------------------
    def job_get(self, job_id: int) -> JobRecord | None:
        rows = self._job_rows("job_get", {"job_id": job_id})
        return rows[0] if rows else None

    def job_list(self, filter: JobFilter) -> list[JobRecord]:
        return self._job_rows("job_list", filter_params(filter, self._array))

    # -- queue administration ---------------------------------------------------------
    def job_cancel(self, job_id: int, *, audit: AuditRecord | None = None) -> bool:
        return bool(self._change("job_cancel", {"job_id": job_id}, audit=audit))

    def job_delete(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int:
        params = filter_params(filter, self._array)
        if params["states"] is None:
            params["states"] = self._array(sorted(str(s) for s in FINISHED_STATES))
        return self._count("job_delete", params, audit=audit)

    def job_prune(self, older_than: float, limit: int = 10_000) -> int:
        return self._count("job_prune", {"older_than": older_than, "limit": limit})

    def queue_stats(self) -> list[QueueStats]:
        by_queue: dict[str, dict[JobState, int]] = {}
        oldest: dict[str, float] = {}
        for row in self._rows("queue_stats", {}):
            counts = by_queue.setdefault(row["queue"], dict.fromkeys(JobState, 0))
            counts[JobState(row["state"])] = int(row["jobs"])
            if row["oldest_due_age"] is not None:
                age = max(0.0, float(row["oldest_due_age"]))
                oldest[row["queue"]] = max(age, oldest.get(row["queue"], 0.0))
        return [
            QueueStats(queue=queue, counts=counts, oldest_available_age=oldest.get(queue))
            for queue, counts in sorted(by_queue.items())
        ]

    def queue_pause(
        self, queue: str, by: str = "", *, audit: AuditRecord | None = None
    ) -> bool:
        return bool(self._change("queue_pause", {"queue": queue, "by": by}, audit=audit))

    def queue_pause_list(self) -> list[QueuePause]:
        return [
            QueuePause(row["queue"], float(row["paused_at"]), row["paused_by"])
            for row in self._rows("queue_pause_list", {})
        ]

    # -- coordination -----------------------------------------------------------------
    def leader_elect(self, name: str, holder: str, ttl: float) -> bool:
        return bool(self._change("leader_elect", {"name": name, "holder": holder, "ttl": ttl}))

    def leader_resign(self, name: str, holder: str) -> None:
        self._change("leader_resign", {"name": name, "holder": holder})

    def worker_list(self, alive_within: float) -> list[WorkerInfo]:
        return [worker_from_row(row)
                for row in self._rows("worker_list", {"alive_within": alive_within})]

    def worker_remove(self, worker_id: str) -> None:
        self._change("worker_remove", {"worker_id": worker_id})

    # -- stats and alerts -------------------------------------------------------------
    _STATS_READ_TASK = "stats_read"
    """The query `stats_read` runs for one task (a dialect may plan it apart)."""

    def stats_read(self, query: StatsQuery) -> list[JobStats]:
        rows = self._rows(
            "stats_read" if query.task is None else self._STATS_READ_TASK,
            {"since": query.since, "until": query.until, "task": query.task,
             "queue": query.queue, "per_minute": query.per_minute},
        )
        return [job_stats_from_row(row) for row in rows]

    def job_throughput(self, since: float, bucket_seconds: float) -> list[Throughput]:
        rows = self._rows("job_throughput", {"since": since, "bucket": bucket_seconds})
        return [
            Throughput(row["queue"], JobState(row["state"]), int(row["bucket"]), int(row["jobs"]))
            for row in rows
        ]

    def stats_error_types(
        self, since: float, *, task: str | None = None, limit: int = 5
    ) -> list[tuple[str, int]]:
        rows = self._rows("stats_error_types", {"since": since, "task": task, "limit": limit})
        return [(str(row["type"]), int(row["attempts"])) for row in rows]

    def stats_prune(self, older_than: float) -> int:
        return self._count("stats_prune", {"older_than": older_than})

    def alert_list(self) -> list[AlertState]:
        return [alert_from_row(row) for row in self._rows("alert_list", {})]

    def alert_set(self, state: AlertState) -> None:
        self._change("alert_set", {"key": state.key, "firing": state.firing,
                                   "details": dumps(state.details)})

    # -- tokens -----------------------------------------------------------------------
    def token_insert(self, token: TokenInsert, *, audit: AuditRecord | None = None) -> int:
        rows = self._change(
            "token_insert",
            {"name": token.name, "token_hash": token.token_hash, "role": token.role,
             "tasks": self._array(list(token.tasks)), "queues": self._array(list(token.queues)),
             "expires_in": token.expires_in},
            audit=audit, audit_target=lambda rows: f"token:{int(rows[0]['id'])}",
        )
        return int(rows[0]["id"])

    def token_list(self) -> list[ApiToken]:
        return [token_from_row(row) for row in self._rows("token_list", {})]

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        rows = self._rows("token_by_hash", {"token_hash": token_hash})
        return token_from_row(rows[0]) if rows else None

    def token_revoke(self, token_id: int, *, audit: AuditRecord | None = None) -> bool:
        return bool(self._change("token_revoke", {"id": token_id}, audit=audit))

    def token_touch(self, token_id: int) -> None:
        self._change("token_touch", {"id": token_id})

    # -- audit log --------------------------------------------------------------------
    def audit_list(self, filter: AuditFilter) -> list[AuditEntry]:
        rows = self._rows(
            "audit_list",
            {"since": filter.since, "until": filter.until, "actor": filter.actor or None,
             "action": filter.action, "before_id": filter.before_id, "limit": filter.limit},
        )
        return [audit_entry_from_row(row) for row in rows]

    # -- event log and incidents ------------------------------------------------------
    def event_insert_many(self, events: Sequence[EventInsert]) -> int:
        if not events:
            return 0
        batch = dumps([
            {"at": e.at, "kind": e.kind, "subject": e.subject, "actor": e.actor,
             "details": e.details_json}
            for e in events
        ])
        return self._count("event_insert", {"events": batch})

    def event_list(self, filter: EventFilter) -> list[EventEntry]:
        rows = self._rows(
            "event_list",
            {"since": filter.since, "until": filter.until, "kind": filter.kind or None,
             "before_id": filter.before_id, "limit": filter.limit},
        )
        return [event_from_row(row) for row in rows]

    def event_prune(self, older_than: float, limit: int = 10_000) -> int:
        return self._count("event_prune", {"older_than": older_than, "limit": limit})

    def incident_open(
        self, title: str, opened_by: str, *, alert_key: str | None = None,
        details: dict[str, Any] | None = None, at: float | None = None,
    ) -> tuple[int, bool]:
        rows = self._change(
            "incident_open",
            {"title": title, "alert_key": alert_key, "opened_by": opened_by,
             "details": dumps(details or {}), "at": at},
        )
        if rows:
            return int(rows[0]["id"]), True
        existing = self.incident_open_for_alert(alert_key) if alert_key is not None else None
        if existing is None:  # closed between the two statements: open a new one
            return self.incident_open(title, opened_by, alert_key=alert_key, details=details,
                                      at=at)
        return existing, False

    def incident_open_for_alert(self, alert_key: str) -> int | None:
        rows = self._rows("incident_open_for_alert", {"alert_key": alert_key})
        return int(rows[0]["id"]) if rows else None

    def incident_close(
        self, incident_id: int, closed_by: str, *, details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> bool:
        return bool(self._change(
            "incident_close",
            {"id": incident_id, "closed_by": closed_by, "details": dumps(details or {}),
             "at": at},
        ))

    def incident_list(
        self, *, open_only: bool = False, before_id: int | None = None, limit: int = 50
    ) -> list[IncidentRecord]:
        rows = self._rows("incident_list",
                          {"open_only": open_only, "before_id": before_id, "limit": limit})
        return [incident_from_row(row) for row in rows]

    def incident_get(self, incident_id: int) -> IncidentRecord | None:
        rows = self._rows("incident_get", {"id": incident_id})
        return incident_from_row(rows[0]) if rows else None

    def job_key_count(self, task: str, key: str) -> int:
        rows = self._rows("job_key_count", {"task": task, "key": key})
        return int(rows[0]["jobs"])

    def error_summary(self, since: float, until: float, limit: int = 10) -> list[ErrorSummary]:
        rows = self._rows("error_summary", {"since": since, "until": until, "limit": limit})
        return [
            ErrorSummary(
                type=str(row["type"]), count=int(row["attempts"]),
                first_at=float(row["first_at"]), last_at=float(row["last_at"]),
                message=str(row["message"] or ""),
                tasks=tuple(sorted(set(str(row["tasks"] or "").split(",")) - {""})),
            )
            for row in rows
        ]
