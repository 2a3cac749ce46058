"""`Incidents`: what the CLI, the HTTP API and the dashboard call (`app.incidents`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from conveyor.backends.base import (
    AuditEntry,
    AuditFilter,
    ErrorSummary,
    EventEntry,
    EventFilter,
    IncidentRecord,
    JobStats,
    QueuePause,
    QueueStats,
    StatsQuery,
    WorkerInfo,
)
from conveyor.errors import OperationError
from conveyor.events import EventBus
from conveyor.incidents.detectors import (
    CronLike,
    DetectorResult,
    DetectorSettings,
    SpoolView,
    run_detectors,
)
from conveyor.incidents.draft import Draft, build_draft, render_markdown
from conveyor.incidents.tracker import IncidentBackend, IncidentTracker
from conveyor.observability.slo import Objective

MAX_LIST = 1000


class IncidentsBackend(IncidentBackend, Protocol):
    def now(self) -> float: ...
    def event_list(self, filter: EventFilter) -> list[EventEntry]: ...
    def stats_read(self, query: StatsQuery) -> list[JobStats]: ...
    def error_summary(self, since: float, until: float, limit: int = 10) -> list[ErrorSummary]: ...
    def audit_list(self, filter: AuditFilter) -> list[AuditEntry]: ...
    def queue_stats(self) -> list[QueueStats]: ...
    def queue_pause_list(self) -> list[QueuePause]: ...
    def worker_list(self, alive_within: float) -> list[WorkerInfo]: ...
    def job_key_count(self, task: str, key: str) -> int: ...


def _limit(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIST:
        raise OperationError(f"limit must be an int from 1 to {MAX_LIST}, got {value!r}")
    return value


class Incidents:
    def __init__(
        self,
        backend: IncidentsBackend,
        objectives: Mapping[str, Objective],
        *,
        events: EventBus | None = None,
        dashboard_url: str | None = None,
        schedules: Mapping[str, Any] | None = None,
        spool: Callable[[], SpoolView | None] | None = None,
    ) -> None:
        self.backend = backend
        self.objectives = objectives
        self.tracker = IncidentTracker(backend, dashboard_url=dashboard_url, events=events)
        self.schedules: Mapping[str, CronLike] = schedules or {}
        self.spool = spool

    # -- incidents --------------------------------------------------------------------
    def open(self, title: str, *, by: str) -> int:
        return self.tracker.open(title, by)

    def close(self, incident_id: int, *, by: str, note: str = "") -> bool:
        self.get(incident_id)
        return self.tracker.close(incident_id, by, note=note)

    def list_incidents(self, *, open_only: bool = False, before_id: int | None = None,
             limit: int = 50) -> list[IncidentRecord]:
        return self.backend.incident_list(open_only=open_only, before_id=before_id,
                                          limit=_limit(limit))

    def get(self, incident_id: int) -> IncidentRecord:
        if isinstance(incident_id, bool) or not isinstance(incident_id, int) or incident_id < 1:
            raise OperationError(f"an incident id is a positive integer, got {incident_id!r}")
        found = self.backend.incident_get(incident_id)
        if found is None:
            raise OperationError(
                f"no incident {incident_id}: see `conveyor incident list` for the ids")
        return found

    def draft(self, incident_id: int) -> Draft:
        incident = self.get(incident_id)
        data = build_draft(self.backend, incident, self.objectives, self.backend.now())
        return Draft(data, render_markdown(data))

    def url(self, incident_id: int) -> str | None:
        return self.tracker.url(incident_id)

    # -- the event log ----------------------------------------------------------------
    def events(self, filter: EventFilter) -> list[EventEntry]:
        _limit(filter.limit)
        if filter.kind is not None and (not filter.kind or len(filter.kind) > 100):
            raise OperationError("an event kind is 1 to 100 characters, e.g. 'worker' or "
                                 "'alert.fired'")
        return self.backend.event_list(filter)

    # -- detectors --------------------------------------------------------------------
    def detect(self, settings: DetectorSettings | None = None,
               only: tuple[str, ...] = ()) -> list[DetectorResult]:
        def task_of(entry: CronLike) -> str:
            return str(getattr(getattr(entry, "task", None), "name", ""))

        return run_detectors(self.backend, settings or DetectorSettings(),
                             schedules=self.schedules, task_of=task_of, spool=self.spool,
                             only=only)


def incident_json(incident: IncidentRecord, url: str | None = None) -> dict[str, Any]:
    return {
        "id": incident.id, "title": incident.title, "opened_at": incident.opened_at,
        "closed_at": incident.closed_at,
        "status": "resolved" if incident.closed_at is not None else "open",
        "alert": incident.alert_key, "opened_by": incident.opened_by,
        "closed_by": incident.closed_by, "details": incident.details,
        "close_details": incident.close_details, "url": url,
    }


def event_json(event: EventEntry) -> dict[str, Any]:
    return {"id": event.id, "at": event.at, "kind": event.kind, "subject": event.subject,
            "actor": event.actor, "details": event.details}


__all__ = ["Incidents", "IncidentsBackend", "event_json", "incident_json"]
