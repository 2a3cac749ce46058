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
from typing import Any, Protocol

from conveyor.backends.base import (
    ROLES,
    ApiToken,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    EventInsert,
    JobFilter,
    TokenInsert,
)
from conveyor.errors import OperationError
from conveyor.events import EventBus, OpsEvent
from conveyor.jsonvalue import storable_text
from conveyor.types import JobRecord, JobState

TOKEN_PREFIX = "cvy_"  # noqa: S105 - a marker, not a secret
AUDIT_RETENTION = 90 * 86400.0
IDS_IN_AUDIT = 100
"""Most job ids written into one audit entry's parameters (the count is always exact)."""
TEXT_LIMIT = 255
ACTOR_LIMIT = 1000


class OperationsBackend(Protocol):
    """The backend role operations need: operator writes (each taking an audit record),
    job and token reads, and the audit log."""

    def job_get(self, job_id: int) -> JobRecord | None: ...
    def job_list(self, filter: JobFilter) -> list[JobRecord]: ...
    def job_retry(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int: ...
    def job_cancel(self, job_id: int, *, audit: AuditRecord | None = None) -> bool: ...
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
    def event_insert_many(self, events: Sequence[EventInsert]) -> int: ...


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
        raise OperationError(f"{what} must be text of 1 to {limit} characters without NUL, "
                             f"got {value!r:.80}")
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

    def cancel(self, job_id: int, *, actor: str, source: str) -> bool:
        """Cancel a job that has not started; False if it is past that."""
        audit = self._record("job.cancel", f"job:{_job_id(job_id)}", actor=actor, source=source)
        return self.backend.job_cancel(job_id, audit=audit)

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


__all__ = ["Operations", "OperationsBackend", "hash_token", "local_actor"]
