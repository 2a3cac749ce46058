"""Operations: the one place that acts on jobs, queues and tokens for a person.

The CLI, the HTTP API and the dashboard all go through `Operations` to retry
dead jobs, cancel, purge, pause and resume queues, list jobs, and create,
list and revoke API tokens. Each action names who asked (`actor`: a token's
name, id and role, `cli:<user>@<host>`, ...) and from where (`source`: the
client's address, `cli`), checks its input (`OperationError`, nothing changed)
and is recorded in the audit log in the same transaction as the action: an
action that committed has its entry, an action that failed has none.

Audit entries are kept `audit_retention` seconds (90 days by default); each
audited action prunes a bounded batch of expired ones, so the log needs no
maintenance job. New kinds of actions (limit changes, ...) record themselves
with `Operations.record`, or pass an `AuditRecord` to the backend method that
makes the change, so they commit together.

Reads (`list_jobs`, `get_job`, `list_tokens`, `audit`) are not audited.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from conveyor.backends.base import (
    ROLES,
    ApiToken,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    EventInsert,
    JobContextRecord,
    JobFilter,
    KeyWait,
    LimitNumbers,
    LimitState,
    StepRecord,
    TokenInsert,
    WorkflowEdge,
    WorkflowNode,
    WorkflowRecord,
)
from conveyor.errors import InvalidOptionError, NotWaitingError, OperationError
from conveyor.events import EventBus, OpsEvent
from conveyor.jsonvalue import check_json, dumps, storable_text
from conveyor.limits import check_burst, check_concurrency, format_rate, parse_rate
from conveyor.types import JobRecord, JobState

TOKEN_PREFIX = "cvy_"  # noqa: S105 - a marker, not a secret
AUDIT_RETENTION = 90 * 86400.0
IDS_IN_AUDIT = 100
"""Most job ids written into one audit entry's parameters (the count is always exact)."""
TEXT_LIMIT = 255
ACTOR_LIMIT = 1000
CANCEL_GRACE = 10.0
"""Seconds a running job has to stop by itself after a cancel, before it is stopped hard."""
SIGNAL_PAYLOAD_LIMIT = 64 * 1024
"""Largest signal payload, in bytes of JSON."""


class OperationsBackend(Protocol):
    """The backend role operations need: operator writes (each taking an audit record),
    job and token reads, and the audit log."""

    def job_get(self, job_id: int) -> JobRecord | None: ...
    def job_list(self, filter: JobFilter) -> list[JobRecord]: ...
    def job_retry(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int: ...
    def job_cancel(self, job_id: int, *, audit: AuditRecord | None = None) -> bool: ...
    def workflow_get(self, workflow_id: str) -> WorkflowRecord | None: ...
    def workflow_list(self, limit: int = 100) -> list[WorkflowRecord]: ...
    def workflow_nodes(self, workflow_id: str) -> list[WorkflowNode]: ...
    def workflow_edges(self, workflow_id: str) -> list[WorkflowEdge]: ...
    def workflow_cancel(
        self, workflow_id: str, *, audit: AuditRecord | None = None
    ) -> int | None: ...
    def job_cancel_request(
        self, job_id: int, grace: float, *, audit: AuditRecord | None = None
    ) -> bool: ...
    def job_signal(self, job_id: int, name: str, payload_json: str) -> str | None: ...
    def job_context(self, job_id: int) -> JobContextRecord | None: ...
    def step_list(self, job_id: int) -> list[StepRecord]: ...
    def job_delete(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int: ...
    def queue_pause(
        self, queue: str, by: str = "", *, audit: AuditRecord | None = None
    ) -> bool: ...
    def queue_resume(self, queue: str, *, audit: AuditRecord | None = None) -> bool: ...
    def token_insert(self, token: TokenInsert, *, audit: AuditRecord | None = None) -> int: ...
    def token_list(self) -> list[ApiToken]: ...
    def token_revoke(self, token_id: int, *, audit: AuditRecord | None = None) -> bool: ...
    def audit_insert(self, record: AuditRecord, count: int = 0) -> int: ...
    def audit_list(self, filter: AuditFilter) -> list[AuditEntry]: ...
    def limit_list(self, name: str | None = None) -> list[LimitState]: ...
    def limit_set(
        self, name: str, numbers: LimitNumbers, *, audit: AuditRecord | None = None
    ) -> bool: ...
    def limit_reset(self, name: str, *, audit: AuditRecord | None = None) -> bool: ...
    def limit_key_wait(self, job: JobRecord) -> KeyWait | None: ...


    def event_insert_many(self, events: Sequence[EventInsert]) -> int: ...


@dataclass(frozen=True, slots=True)
class WorkflowView:
    """What `conveyor workflow show`, the API and the dashboard show of one workflow."""

    workflow: WorkflowRecord
    nodes: list[WorkflowNode]
    edges: list[WorkflowEdge]

    def node_state(self, node: WorkflowNode) -> str:
        """The node's state as shown: `pending` while it waits for its parents."""
        return "pending" if node.pending else str(node.state)

    def to_json(self) -> dict[str, Any]:
        """The JSON the API returns and `conveyor workflow show --json` prints."""
        record = self.workflow
        return {
            "id": record.id,
            "name": record.name,
            "created_at": record.created_at,
            "cancelled_at": record.cancelled_at,
            "counts": self.counts(),
            "nodes": [
                {"job_id": n.job_id, "name": n.name, "task": n.task, "queue": n.queue,
                 "state": self.node_state(n), "waiting_for": n.waiting,
                 "failed_parents": n.failed, "runs_when": n.runs_when, "inputs": n.inputs,
                 "priority": n.priority, "attempt": n.attempt,
                 "max_attempts": n.max_attempts, "created_at": n.created_at,
                 "started_at": n.started_at, "finished_at": n.finished_at}
                for n in self.nodes
            ],
            "edges": [{"parent": e.parent_id, "child": e.child_id, "position": e.position}
                      for e in self.edges],
        }

    def counts(self) -> dict[str, int]:
        """Nodes per shown state (progress)."""
        found: dict[str, int] = {}
        for node in self.nodes:
            state = self.node_state(node)
            found[state] = found.get(state, 0) + 1
        return found


def hash_token(token: str) -> str:
    """The stored form of an API token: hex SHA-256 (tokens are random, not passwords)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def local_actor(kind: str = "cli") -> str:
    """`cli:<user>@<host>`: who runs a command on this machine."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without /etc/passwd entry)
        user = "unknown"
    return f"{kind}:{user}@{socket.gethostname()}"


def _text(value: object, what: str, limit: int = TEXT_LIMIT) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not storable_text(
        value
    ):
        raise OperationError(f"{what} must be text of 1 to {limit} characters, not only "
                             f"blanks, without NUL, got {value!r:.80}")
    return value


def _job_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise OperationError(f"a job id is a whole number >= 1, got {value!r:.80}")
    return value


def _filter_params(found: JobFilter) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if found.states:
        params["states"] = sorted(str(s) for s in found.states)
    if found.task is not None:
        params["task"] = found.task
    if found.queue is not None:
        params["queue"] = found.queue
    if found.ids:
        params["ids"] = list(found.ids)[:IDS_IN_AUDIT]
        if len(found.ids) > IDS_IN_AUDIT:
            params["ids_given"] = len(found.ids)
    return params


def _filter_target(found: JobFilter) -> str:
    if len(found.ids) == 1:
        return f"job:{found.ids[0]}"
    return "jobs"


def _check_filter(found: JobFilter) -> JobFilter:
    for value, what in ((found.task, "task"), (found.queue, "queue")):
        if value is not None:
            _text(value, what)
    for job_id in found.ids:
        _job_id(job_id)
    return found


class Operations:
    """Operator and admin actions on one backend, each audited (see the module docs)."""

    def __init__(
        self, backend: OperationsBackend, *, audit_retention: float = AUDIT_RETENTION,
        events: EventBus | None = None,
    ) -> None:
        self.backend = backend
        self.audit_retention = audit_retention
        self.events = events
        """Where the actions are published for the durable event log (see `conveyor.incidents`)."""

    def _publish(self, kind: str, subject: str, actor: str, **details: Any) -> None:
        if self.events is not None:
            self.events.publish(OpsEvent(kind, subject, details, actor=actor))

    def _record(
        self, action: str, target: str, *, actor: str, source: str,
        params: dict[str, Any] | None = None,
    ) -> AuditRecord:
        return AuditRecord(
            actor=_text(actor, "actor", ACTOR_LIMIT),
            source=_text(source, "source", ACTOR_LIMIT),
            action=action, target=target, params=params or {},
            retention=self.audit_retention,
        )

    # -- jobs -----------------------------------------------------------------------------
    def list_jobs(self, found: JobFilter) -> list[JobRecord]:
        """Jobs matching the filter, newest first."""
        return self.backend.job_list(_check_filter(found))

    def get_job(self, job_id: int) -> JobRecord | None:
        return self.backend.job_get(_job_id(job_id))

    def retry(self, found: JobFilter, *, actor: str, source: str) -> int:
        """Move the dead jobs matching `found` back to available with fresh attempts;
        returns how many. Jobs in other states are left alone."""
        _check_filter(found)
        audit = self._record("job.retry", _filter_target(found), actor=actor, source=source,
                             params=_filter_params(found))
        count = self.backend.job_retry(found, audit=audit)
        if count and JobState.DEAD in (found.states or (JobState.DEAD,)):
            self._publish("dlq.retried", _filter_target(found), audit.actor, jobs=count,
                          filter=_filter_params(found))
        return count

    def cancel(
        self, job_id: int, *, actor: str, source: str, grace: float | None = None
    ) -> bool:
        """Cancel a job, running or not; False when it has finished (or does not exist).

        A job that has not started (or waits in `ctx.sleep`/`ctx.wait_for`) is
        `cancelled` at once. A running job is asked to stop: its task sees
        `ctx.cancelled`, and its worker stops it hard once `grace` seconds (default
        CANCEL_GRACE) have passed; it is `cancelled` when that happened.
        """
        _job_id(job_id)
        grace = CANCEL_GRACE if grace is None else grace
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not (
            math.isfinite(grace) and 0 <= grace <= 86400
        ):
            raise OperationError(f"grace must be 0 to 86400 seconds, got {grace!r:.80}")
        record = self.backend.job_get(job_id)
        if record is None:
            return False
        if record.state is JobState.RUNNING:
            audit = self._record("job.cancel", f"job:{job_id}", actor=actor, source=source,
                                 params={"running": True, "grace": float(grace)})
            if self.backend.job_cancel_request(job_id, float(grace), audit=audit):
                return True
        audit = self._record("job.cancel", f"job:{job_id}", actor=actor, source=source)
        return self.backend.job_cancel(job_id, audit=audit)

    # -- workflows ------------------------------------------------------------------------
    def get_workflow(self, workflow_id: str) -> WorkflowView | None:
        """A workflow with its nodes (each with its state) and edges; None if unknown."""
        workflow_id = _text(workflow_id, "workflow id")
        record = self.backend.workflow_get(workflow_id)
        if record is None:
            return None
        return WorkflowView(record, self.backend.workflow_nodes(workflow_id),
                            self.backend.workflow_edges(workflow_id))

    def list_workflows(self, limit: int = 100) -> list[WorkflowRecord]:
        return self.backend.workflow_list(max(1, min(int(limit), 1000)))

    def cancel_workflow(self, workflow_id: str, *, actor: str, source: str) -> int | None:
        """Cancel every node of the workflow that has not started (none of them starts
        afterwards); how many, or None if there is no such workflow."""
        workflow_id = _text(workflow_id, "workflow id")
        audit = self._record("workflow.cancel", f"workflow:{workflow_id}",
                             actor=actor, source=source)
        return self.backend.workflow_cancel(workflow_id, audit=audit)

    def signal(
        self, job_id: int, name: str, payload: Any = None, *, actor: str, source: str
    ) -> str:
        """Deliver signal `name` with a JSON `payload` to a job waiting for it in
        `ctx.wait_for(name)`; returns "woken" (it was given back to wait: it is due now)
        or "delivered" (it is still running, about to wait: it is due the moment it
        gives its slot back). `NotWaitingError` when the job does not wait for it."""
        _job_id(job_id)
        _text(name, "signal name", 193)
        try:
            check_json(payload, "signal payload")
            text = dumps(payload)
        except Exception as exc:
            raise OperationError(f"a signal payload must be JSON: {exc}") from None
        if len(text.encode()) > SIGNAL_PAYLOAD_LIMIT:
            raise OperationError(
                f"a signal payload is at most {SIGNAL_PAYLOAD_LIMIT} bytes of JSON; store "
                "large data elsewhere and signal its key"
            )
        status = self.backend.job_signal(job_id, f"signal:{name}", text)  # its wait step
        if status is None:
            record = self.backend.job_get(job_id)
            state = "does not exist" if record is None else f"is {record.state}"
            raise NotWaitingError(
                f"job {job_id} {state} and is not waiting for signal {name!r}: a signal "
                "wakes a job inside ctx.wait_for(name); check the name, and that the job "
                "has reached its wait"
            )
        self.record("job.signal", f"job:{job_id}", actor=actor, source=source,
                    params={"signal": name}, count=1)
        return "woken" if status == "done" else "delivered"

    def job_steps(self, job_id: int) -> tuple[JobContextRecord | None, list[StepRecord]]:
        """A job's stored context (progress, metadata, cancel request) and its steps."""
        _job_id(job_id)
        return self.backend.job_context(job_id), self.backend.step_list(job_id)

    def purge(self, found: JobFilter, *, actor: str, source: str) -> int:
        """Delete the finished jobs matching `found` (all finished states unless it names
        some); returns how many."""
        _check_filter(found)
        if any(s not in (JobState.DEAD, JobState.SUCCEEDED, JobState.CANCELLED)
               for s in found.states):
            raise OperationError("only finished jobs (dead, succeeded, cancelled) can be purged")
        audit = self._record("job.purge", _filter_target(found), actor=actor, source=source,
                             params=_filter_params(found))
        count = self.backend.job_delete(found, audit=audit)
        if count:
            self._publish("dlq.purged" if set(found.states) == {JobState.DEAD} else "jobs.purged",
                          _filter_target(found), audit.actor, jobs=count,
                          filter=_filter_params(found))
        return count

    # -- queues ---------------------------------------------------------------------------
    def pause_queue(self, queue: str, *, actor: str, source: str) -> bool:
        """Stop workers fetching from `queue`; False if it was already paused."""
        _text(queue, "queue")
        audit = self._record("queue.pause", f"queue:{queue}", actor=actor, source=source)
        paused = self.backend.queue_pause(queue, by=actor[:TEXT_LIMIT], audit=audit)
        if paused:
            self._publish("queue.paused", queue, audit.actor)
        return paused

    def resume_queue(self, queue: str, *, actor: str, source: str) -> bool:
        """Let workers fetch from `queue` again; False if it was not paused."""
        _text(queue, "queue")
        audit = self._record("queue.resume", f"queue:{queue}", actor=actor, source=source)
        resumed = self.backend.queue_resume(queue, audit=audit)
        if resumed:
            self._publish("queue.resumed", queue, audit.actor)
        return resumed

    # -- annotations ----------------------------------------------------------------------
    def annotate(self, text: str, *, actor: str, source: str, subject: str = "",
                 kind: str = "annotation", at: float | None = None) -> None:
        """Write an annotation ("deployed v1.4.2") into the event log now, so incident
        drafts can say what changed; `kind` is `annotation` or a family under it
        (`annotation.deploy`). Audited like any other action."""
        text = _text(text, "annotation text", 2000)
        if not text.strip():
            raise OperationError("an annotation needs some text, e.g. 'deployed v1.4.2'")
        if kind != "annotation" and not (kind.startswith("annotation.") and 11 < len(kind) <= 100
                                         and kind.replace(".", "").replace("_", "").isalnum()):
            raise OperationError(
                f"an annotation kind is 'annotation' or 'annotation.<word>' (e.g. "
                f"'annotation.deploy'), got {kind!r}")
        subject = _text(subject, "subject", 1000) if subject else ""
        who = _text(actor, "actor", ACTOR_LIMIT)
        if at is not None and not (isinstance(at, int | float) and math.isfinite(at)):
            raise OperationError(f"an annotation time must be epoch seconds, got {at!r}")
        self.backend.event_insert_many([EventInsert(
            kind=kind, subject=subject, actor=who,
            details_json=json.dumps({"text": text, "source": source}), at=at)])

    # -- flow-control limits ------------------------------------------------------------
    def list_limits(self, name: str | None = None) -> list[LimitState]:
        return self.backend.limit_list(name)

    def set_limit(
        self,
        name: str,
        *,
        actor: str,
        source: str,
        rate: object = None,
        burst: object = None,
        concurrency: object = None,
        key_rate: object = None,
        key_burst: object = None,
        key_concurrency: object = None,
        clear: Sequence[str] = (),
    ) -> LimitState:
        """Change a limit's numbers at run time (sticky across deploys until
        `reset_limit`); workers apply them at their next fetch.

        `rate`/`key_rate`: '10/s', '600/m'; `clear`: names of bounds to remove
        ("rate", "concurrency", "key_rate", "key_concurrency").
        """
        _text(name, "limit name")
        found = self.backend.limit_list(name)
        if not found:
            known = ", ".join(s.name for s in self.backend.limit_list()) or "none"
            raise OperationError(
                f"no limit named {name!r} (known: {known}); limits are declared in code "
                "with app.limit(...) and stored when a worker starts"
            )
        unknown = set(clear) - {"rate", "concurrency", "key_rate", "key_concurrency"}
        if unknown:
            raise OperationError(
                f"cannot clear {sorted(unknown)}: give rate, concurrency, key_rate or "
                "key_concurrency"
            )
        now = found[0]
        try:
            new_rate = now.rate if rate is None else parse_rate(rate)
            new_key_rate = now.key_rate if key_rate is None else parse_rate(key_rate, "key_rate")
            numbers = LimitNumbers(
                rate=None if "rate" in clear else new_rate,
                burst=None if "rate" in clear or new_rate is None else (
                    check_burst(burst) if burst is not None
                    else now.burst if rate is None and now.burst is not None
                    else max(1.0, new_rate)),
                concurrency=None if "concurrency" in clear else (
                    now.concurrency if concurrency is None else check_concurrency(concurrency)),
                key_rate=None if "key_rate" in clear else new_key_rate,
                key_burst=None if "key_rate" in clear or new_key_rate is None else (
                    check_burst(key_burst, "key_burst") if key_burst is not None
                    else now.key_burst if key_rate is None and now.key_burst is not None
                    else max(1.0, new_key_rate)),
                key_concurrency=None if "key_concurrency" in clear else (
                    now.key_concurrency if key_concurrency is None
                    else check_concurrency(key_concurrency, "key_concurrency")),
            )
        except InvalidOptionError as exc:
            raise OperationError(str(exc)) from exc
        if burst is not None and numbers.rate is None:
            raise OperationError("burst needs a rate: give --rate too")
        params: dict[str, Any] = {
            "rate": None if numbers.rate is None else format_rate(numbers.rate),
            "burst": numbers.burst, "concurrency": numbers.concurrency,
            "key_rate": None if numbers.key_rate is None else format_rate(numbers.key_rate),
            "key_burst": numbers.key_burst, "key_concurrency": numbers.key_concurrency,
        }
        audit = self._record("limit.set", f"limit:{name}", actor=actor, source=source,
                             params=params)
        if not self.backend.limit_set(name, numbers, audit=audit):
            raise OperationError(f"limit {name!r} was removed meanwhile")
        return self.backend.limit_list(name)[0]

    def reset_limit(self, name: str, *, actor: str, source: str) -> bool:
        """Let the declaration in code set the limit's numbers again (at the next worker
        start or enqueue); False when there is no such limit."""
        _text(name, "limit name")
        audit = self._record("limit.reset", f"limit:{name}", actor=actor, source=source)
        return self.backend.limit_reset(name, audit=audit)

    def why_waiting(self, job: JobRecord) -> str | None:
        """Why an available job has not started, in words (None: nothing holds it)."""
        return explain_wait(job, self.backend)

    # -- tokens ---------------------------------------------------------------------------
    def list_tokens(self) -> list[ApiToken]:
        return self.backend.token_list()

    def create_token(
        self,
        *,
        name: str,
        role: str,
        tasks: Sequence[str] = (),
        queues: Sequence[str] = (),
        expires_in: float | None = None,
        actor: str,
        source: str,
    ) -> tuple[str, ApiToken]:
        """Store a new API token; returns the token (shown once, kept nowhere) and its row.

        `expires_in`: seconds until the token stops working (None: until revoked)."""
        if role not in ROLES:
            raise OperationError(f"role must be one of {', '.join(ROLES)}, got {role!r:.80}")
        if (tasks or queues) and role != "enqueuer":
            raise OperationError(
                "only an enqueuer token can be limited to tasks or queues; other roles act on all"
            )
        name = name.strip() if isinstance(name, str) else name
        if not (isinstance(name, str) and name and len(name) <= TEXT_LIMIT
                and storable_text(name)):
            raise OperationError(
                "give the token a name of 1 to 255 characters (e.g. billing-svc)"
            )
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, int | float)
            or not math.isfinite(expires_in) or expires_in <= 0
        ):
            raise OperationError(
                f"expires_in must be a number of seconds > 0 (or none: until revoked), "
                f"got {expires_in!r:.80}"
            )
        task_list = [_text(t, "a task name") for t in tasks]
        queue_list = [_text(q, "a queue name") for q in queues]
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        audit = self._record(
            "token.create", "token", actor=actor, source=source,
            params={"name": name, "role": role, "tasks": task_list, "queues": queue_list,
                    "expires_in": expires_in},
        )
        token_id = self.backend.token_insert(
            TokenInsert(name=name, token_hash=hash_token(token), role=role,
                        tasks=task_list, queues=queue_list, expires_in=expires_in),
            audit=audit,
        )
        stored = next(t for t in self.backend.token_list() if t.id == token_id)
        return token, stored

    def revoke_token(self, token_id: int, *, actor: str, source: str) -> bool:
        """Revoke a token at once; False if there is no such live token."""
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 1:
            raise OperationError(f"a token id is a whole number >= 1, got {token_id!r:.80}")
        audit = self._record("token.revoke", f"token:{token_id}", actor=actor, source=source)
        return self.backend.token_revoke(token_id, audit=audit)

    # -- the audit log --------------------------------------------------------------------
    def record(
        self, action: str, target: str, *, actor: str, source: str,
        params: dict[str, Any] | None = None, count: int = 0,
    ) -> int:
        """Audit an action that has no method here yet (e.g. a limit change): call it
        right after the change commits. Returns the entry's id."""
        _text(action, "action", 100)
        return self.backend.audit_insert(
            self._record(action, target, actor=actor, source=source, params=params), count
        )

    def audit(self, found: AuditFilter) -> list[AuditEntry]:
        """Audit entries, newest first."""
        if not 1 <= found.limit <= 10_000:
            raise OperationError(f"limit must be 1 to 10000, got {found.limit}")
        if found.actor is not None:
            _text(found.actor, "actor", ACTOR_LIMIT)
        return self.backend.audit_list(found)


def steps_json(
    context: JobContextRecord | None, found: Sequence[StepRecord]
) -> dict[str, Any]:
    """The JSON form of a job's context and steps (the CLI's and the API's)."""
    return {
        "progress": {
            "fraction": None if context is None else context.progress,
            "message": None if context is None else context.progress_message,
        },
        "metadata": {} if context is None else context.metadata,
        "cancel_requested_at": None if context is None else context.cancel_requested_at,
        "steps": [
            {"name": s.name, "status": s.status, "attempt": s.attempt, "tries": s.tries,
             "started_at": s.started_at, "finished_at": s.finished_at, "wake_at": s.wake_at,
             "took": None if s.finished_at is None else s.finished_at - s.started_at,
             "result": None if s.result_json is None else json.loads(s.result_json)}
            for s in found
        ],
    }


__all__ = [
    "CANCEL_GRACE", "Operations", "OperationsBackend", "explain_wait", "hash_token", "limit_json",
    "local_actor", "steps_json",
]


def explain_wait(job: JobRecord, backend: OperationsBackend) -> str | None:
    """"waiting for limit stripe: 25/s, 4,210 ahead": why an available limited job waits."""
    if job.state != JobState.AVAILABLE or job.limit_name is None:
        return None
    states = backend.limit_list(job.limit_name)
    if not states:
        return f"waiting for limit {job.limit_name}, which no worker has declared yet"
    limit = states[0]
    where = backend.limit_key_wait(job)
    bounds = []
    if limit.rate is not None:
        bounds.append(format_rate(limit.rate))
    if limit.concurrency is not None:
        bounds.append(f"{limit.running}/{limit.concurrency} running")
    text = f"waiting for limit {limit.name}"
    if bounds:
        text += ": " + ", ".join(bounds)
    if where is None:
        return text
    text += f", {where.ahead_in_limit:,} ahead"
    if job.limit_key:
        key_bounds = []
        if limit.key_concurrency is not None:
            key_bounds.append(f"{where.running}/{limit.key_concurrency} running")
        if limit.key_rate is not None:
            key_bounds.append(format_rate(limit.key_rate))
        text += f"; key {job.limit_key!r}: {where.ahead_in_key:,} ahead"
        if key_bounds:
            text += " (" + ", ".join(key_bounds) + ")"
        if where.key_paused_for > 0:
            text += f", paused {where.key_paused_for:.0f}s more"
    if limit.paused_for > 0:
        reason = f" ({limit.paused_reason})" if limit.paused_reason else ""
        text += f"; limit paused {limit.paused_for:.0f}s more{reason}"
    return text


def limit_json(state: LimitState) -> dict[str, Any]:
    """A limit as the CLI's --json and the HTTP API show it."""
    return {
        "name": state.name,
        "rate": None if state.rate is None else format_rate(state.rate),
        "rate_per_second": state.rate, "burst": state.burst,
        "concurrency": state.concurrency,
        "key_rate": None if state.key_rate is None else format_rate(state.key_rate),
        "key_burst": state.key_burst, "key_concurrency": state.key_concurrency,
        "queue": state.queue, "overridden": state.overridden, "tokens": state.tokens,
        "running": state.running, "waiting": state.waiting,
        "paused_for": state.paused_for, "paused_reason": state.paused_reason,
    }
