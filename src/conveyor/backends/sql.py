"""Named SQL, loaded once from the `.sql` files that sit beside each backend, and the
base class both SQL dialects share.

A query file holds one statement; its file name (without `.sql`) is its name.
Migrations are `migrations/NNNN_description.sql`, applied in number order.
No SQL is assembled from strings at run time.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

from conveyor.backends.base import (
    AlertState,
    ApiToken,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    BreakerRow,
    CancelRequest,
    ErrorSummary,
    EventEntry,
    EventFilter,
    EventInsert,
    IncidentRecord,
    JobContextRecord,
    JobFilter,
    JobStats,
    OperatorRetry,
    QueuePause,
    QueueStats,
    RetryBudgetUse,
    SpoolHost,
    SpoolReport,
    StatsQuery,
    StepRecord,
    StepSave,
    Throughput,
    TokenInsert,
    WorkerInfo,
    WorkflowEdge,
    WorkflowInsert,
    WorkflowNode,
    WorkflowRecord,
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
from conveyor.jsonvalue import loads_readable
from conveyor.types import FINISHED_STATES, JobRecord, JobState

T = TypeVar("T")
Run = Callable[[str, dict[str, Any]], Sequence[RowLike]]
"""Runs a named query inside the open transaction; its rows (none for a plain write)."""

RETRY_BUDGET_KEEP = 3600.0
"""Seconds of retry-budget counts kept: the longest window a budget may have."""

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

    @abstractmethod
    def _atomically(self, work: Callable[[Run], T]) -> T:
        """`work(run)` in one write transaction, committed when it returns."""

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

    def job_retries(self, job_id: int) -> list[OperatorRetry]:
        return [
            OperatorRetry(float(row["at"]), row["actor"], int(row["after_errors"]))
            for row in self._rows("job_retries", {"job_id": job_id})
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

    def spool_report(self, report: SpoolReport) -> None:
        self._change("spool_report", {
            "host": report.host, "path": report.path, "forwarded": report.forwarded,
            "depth": report.depth, "oldest": report.oldest_spooled_at,
        })

    def spool_hosts(self, limit: int = 100) -> list[SpoolHost]:
        return [
            SpoolHost(
                host=row["host"], path=row["path"], forwarded=int(row["forwarded"]),
                depth=int(row["depth"]),
                oldest_spooled_at=None if row["oldest_spooled_at"] is None
                else float(row["oldest_spooled_at"]),
                first_forward_at=float(row["first_forward_at"]),
                reported_at=float(row["reported_at"]),
            )
            for row in self._rows("spool_hosts", {"limit": limit})
        ]

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

    # -- workflows --------------------------------------------------------------------
    def _workflow_write(
        self, run: Run, workflow: WorkflowInsert, job_ids: Sequence[int]
    ) -> None:
        """The workflow's own rows, in the transaction that inserted its jobs."""
        run("workflow_insert", {"id": workflow.id, "name": workflow.name})
        run("workflow_nodes_insert", {"workflow_id": workflow.id, "nodes": dumps([
            {"job_id": job_ids[i], "name": node.name, "runs_when": node.runs_when,
             "inputs": node.inputs, "waiting": len(node.parents)}
            for i, node in enumerate(workflow.nodes)
        ])})
        edges = [[job_ids[parent], job_ids[i], position]
                 for i, node in enumerate(workflow.nodes)
                 for position, parent in enumerate(node.parents)]
        if edges:
            run("workflow_edges_insert", {"edges": dumps(edges)})

    def _workflow_advance(self, run: Run, finished: Sequence[tuple[int, str]]) -> list[str]:
        """Jobs in `finished` (id, final state) just ended: resolve their edges once,
        count them into their children, cancel the children that can no longer run
        (and, in turn, theirs) and release those whose parents are all done. In the
        caller's transaction; returns the queues of the released nodes (to wake)."""
        woken: set[str] = set()
        frontier = [(job_id, state) for job_id, state in finished
                    if JobState(state) in FINISHED_STATES]
        while frontier:
            succeeded = {job_id for job_id, state in frontier if state == JobState.SUCCEEDED}
            rows = run("workflow_edges_resolve",
                       {"ids": self._array([job_id for job_id, _ in frontier])})
            if not rows:
                break
            counts: dict[int, list[int]] = {}
            for row in rows:
                count = counts.setdefault(int(row["child_id"]), [0, 0])
                count[0] += 1
                count[1] += int(int(row["parent_id"]) not in succeeded)
            children = sorted(counts)
            run("workflow_nodes_count", {"counts": dumps(
                [{"child": child, "n": counts[child][0], "f": counts[child][1]}
                 for child in children])})
            cancelled = run("workflow_nodes_cancel", {"ids": self._array(children)})
            released = run("workflow_nodes_release", {"ids": self._array(children)})
            woken.update(str(row["queue"]) for row in released)
            frontier = [(int(row["id"]), JobState.CANCELLED.value) for row in cancelled]
        return sorted(woken)

    def workflow_get(self, workflow_id: str) -> WorkflowRecord | None:
        rows = self._rows("workflow_get", {"workflow_id": workflow_id})
        return _workflow_from_row(rows[0]) if rows else None

    def workflow_list(self, limit: int = 100) -> list[WorkflowRecord]:
        return [_workflow_from_row(row) for row in self._rows("workflow_list", {"limit": limit})]

    def workflow_nodes(self, workflow_id: str) -> list[WorkflowNode]:
        return [
            WorkflowNode(
                job_id=int(row["job_id"]), name=str(row["name"]), task=str(row["task"]),
                queue=str(row["queue"]), state=JobState(row["state"]),
                waiting=int(row["waiting"]), failed=int(row["failed"]),
                runs_when=str(row["runs_when"]), inputs=str(row["inputs"]),
                priority=int(row["priority"]), attempt=int(row["attempt"]),
                max_attempts=int(row["max_attempts"]), created_at=float(row["created_at"]),
                started_at=_float_or_none(row["started_at"]),
                finished_at=_float_or_none(row["finished_at"]),
            )
            for row in self._rows("workflow_node_list", {"workflow_id": workflow_id})
        ]

    def workflow_edges(self, workflow_id: str) -> list[WorkflowEdge]:
        return [
            WorkflowEdge(int(row["parent_id"]), int(row["child_id"]), int(row["position"]),
                         bool(row["resolved"]))
            for row in self._rows("workflow_edge_list", {"workflow_id": workflow_id})
        ]

    def workflow_inputs(self, job_id: int) -> list[Any] | None:
        rows = self._rows("workflow_inputs", {"job_id": job_id})
        if not rows or rows[0]["inputs"] == "none":
            return None
        results = [
            None if row["result"] is None or row["state"] != JobState.SUCCEEDED
            else loads_readable(row["result"])
            for row in rows if row["state"] is not None
        ]
        if rows[0]["inputs"] == "previous":
            return results[:1] if results else [None]
        return [results]


    # -- flow control: shared breakers and retry budgets -------------------------------
    def breaker_list(self, tasks: Sequence[str]) -> list[BreakerRow]:
        if not tasks:
            return []
        return [_breaker_from_row(row)
                for row in self._rows("breaker_list", {"tasks": self._array(list(tasks))})]

    def breaker_update(
        self, task: str, change: Callable[[BreakerRow], BreakerRow]
    ) -> tuple[BreakerRow, BreakerRow]:
        def work(run: Run) -> tuple[BreakerRow, BreakerRow]:
            run("breaker_ensure", {"task": task})
            before = _breaker_from_row(run("breaker_lock", {"task": task})[0])
            after = change(before)
            if after != before:
                params = {
                    name: getattr(after, name) for name in (
                        "task", "state", "window_started_at", "attempts", "failures",
                        "prev_attempts", "prev_failures", "cooldown", "open_until",
                        "probe_holder", "probe_expires_at", "changed_at",
                    )
                }
                run("breaker_write", params)
            return before, after

        return self._atomically(work)

    def retry_budget_count(self, task: str, first_attempts: int) -> None:
        if first_attempts <= 0:
            return

        def work(run: Run) -> None:
            second = _locked_second(run, task)
            run("retry_budget_count", {"task": task, "second": second,
                                       "first_attempts": first_attempts, "retries": 0})
            run("retry_budget_prune", {"task": task, "second": second,
                                       "keep": RETRY_BUDGET_KEEP})

        self._atomically(work)

    def retry_budget_take(
        self, task: str, *, first_attempts: int, window: float, ratio: float, floor: int
    ) -> RetryBudgetUse:
        def work(run: Run) -> RetryBudgetUse:
            second = _locked_second(run, task)
            if first_attempts > 0:
                run("retry_budget_count", {"task": task, "second": second,
                                           "first_attempts": first_attempts, "retries": 0})
            row = run("retry_budget_window",
                      {"task": task, "second": second, "window": window})[0]
            firsts, retries = int(row["first_attempts"]), int(row["retries"])
            allowed = retries + 1 <= ratio * firsts + floor
            if allowed:
                run("retry_budget_count", {"task": task, "second": second,
                                           "first_attempts": 0, "retries": 1})
                retries += 1
            return RetryBudgetUse(allowed, firsts, retries)

        return self._atomically(work)



    # -- steps, waits, progress and cancel requests (see conveyor.steps) ---------------
    def step_list(self, job_id: int) -> list[StepRecord]:
        return [
            StepRecord(
                name=row["name"], args_digest=row["args_digest"], status=row["status"],
                result_json=row["result"], wake_at=_float_or_none(row["wake_at"]),
                attempt=int(row["attempt"]), tries=int(row["tries"]),
                started_at=float(row["started_at"]), finished_at=_float_or_none(row["finished_at"]),
            )
            for row in self._rows("step_list", {"job_id": job_id})
        ]

    def step_save(self, step: StepSave) -> bool:
        return bool(self._change("step_save", step_params(step)))

    def job_context(self, job_id: int) -> JobContextRecord | None:
        rows = self._rows("context_get", {"job_id": job_id})
        if not rows:
            return None
        row = rows[0]
        metadata = json.loads(row["metadata"]) if row["metadata"] else {}
        return JobContextRecord(
            progress=_float_or_none(row["progress"]), progress_message=row["progress_message"],
            metadata=metadata if isinstance(metadata, dict) else {},
            updated_at=_float_or_none(row["updated_at"]),
            cancel_requested_at=_float_or_none(row["cancel_requested_at"]),
            cancel_grace=_float_or_none(row["cancel_grace"]),
        )

    def job_report(
        self, job_id: int, lease_token: int, *, progress: float | None = None,
        message: str | None = None, set_progress: bool = False,
        metadata_json: str | None = None,
    ) -> bool | None:
        rows = self._change("context_report", {
            "job_id": job_id, "lease_token": lease_token, "progress": progress,
            "message": message, "set_progress": set_progress, "metadata": metadata_json,
        })
        return bool(rows[0]["cancel_requested"]) if rows else None

    def job_cancel_request(
        self, job_id: int, grace: float, *, audit: AuditRecord | None = None
    ) -> bool:
        return bool(self._change(
            "job_cancel_request", {"job_id": job_id, "grace": grace}, audit=audit
        ))

    def job_cancel_watch(self, worker_id: str, job_ids: Sequence[int]) -> list[CancelRequest]:
        if not job_ids:
            return []
        rows = self._rows(
            "job_cancel_watch", {"worker_id": worker_id, "ids": self._array(list(job_ids))}
        )
        return [
            CancelRequest(int(row["job_id"]), int(row["lease_token"]),
                          max(0.0, float(row["age"])), float(row["cancel_grace"] or 0.0))
            for row in rows
        ]

    def job_cancel_running(self, job_id: int, lease_token: int) -> bool:
        # A cancelled workflow node settles its dependants in the same transaction
        # (cancelled, or released under runs_when="finished"), as job_cancel does.
        def work(run: Run) -> bool:
            rows = run("job_cancel_running", {"job_id": job_id, "lease_token": lease_token})
            if rows:
                self._workflow_advance(run, [(job_id, JobState.CANCELLED.value)])
            return bool(rows)

        return self._atomically(work)


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


def step_params(step: StepSave) -> dict[str, Any]:
    """The parameters of the step_save query."""
    return {
        "job_id": step.job_id, "lease_token": step.lease_token, "name": step.name,
        "args_digest": step.args_digest, "status": step.status,
        "result": step.result_json, "wake_in": step.wake_in, "tries": step.tries,
        "took": max(0.0, step.took),
    }


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _workflow_from_row(row: RowLike) -> WorkflowRecord:
    return WorkflowRecord(str(row["id"]), str(row["name"]), float(row["created_at"]),
                          _float_or_none(row["cancelled_at"]))


def _locked_second(run: Run, task: str) -> int:
    """Take the task's retry-budget lock; the whole second (database clock) it was taken
    in, which every count of the transaction goes to."""
    return math.floor(float(run("retry_budget_lock", {"task": task})[0]["now"]))


def _breaker_from_row(row: RowLike) -> BreakerRow:
    return BreakerRow(
        task=str(row["task"]), state=row["state"],
        window_started_at=float(row["window_started_at"]),
        attempts=int(row["attempts"]), failures=int(row["failures"]),
        prev_attempts=int(row["prev_attempts"]), prev_failures=int(row["prev_failures"]),
        cooldown=float(row["cooldown"]), open_until=_float_or_none(row["open_until"]),
        probe_holder=row["probe_holder"],
        probe_expires_at=_float_or_none(row["probe_expires_at"]),
        changed_at=float(row["changed_at"]), now=float(row["now"]),
    )
