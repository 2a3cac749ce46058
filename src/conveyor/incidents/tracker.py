"""Incidents: opened by a page-level alert (or by hand), closed when it resolves.

The alert evaluator tells the tracker of every alert before sending it. A page
that starts firing opens an incident (one per alert: a page sent again after a
failed delivery finds the one already open); its "resolved" closes it. Both
notices then carry the incident's number and, when the app knows where its
dashboard is, a link to the incident's page, so the Slack and webhook messages
lead to the timeline. Tickets open nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from conveyor.backends.base import IncidentRecord
from conveyor.errors import OperationError
from conveyor.events import EventBus, OpsEvent
from conveyor.incidents import check_dashboard_url
from conveyor.observability.alerts import Alert


class IncidentBackend(Protocol):
    def incident_open(
        self, title: str, opened_by: str, *, alert_key: str | None = None,
        details: dict[str, Any] | None = None, at: float | None = None,
    ) -> tuple[int, bool]: ...
    def incident_close(
        self, incident_id: int, closed_by: str, *, details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> bool: ...
    def incident_open_for_alert(self, alert_key: str) -> int | None: ...
    def incident_list(
        self, *, open_only: bool = False, before_id: int | None = None, limit: int = 50
    ) -> list[IncidentRecord]: ...
    def incident_get(self, incident_id: int) -> IncidentRecord | None: ...


def check_title(title: object) -> str:
    if not isinstance(title, str) or not title.strip() or len(title) > 1000:
        raise OperationError(
            "an incident needs a title of 1 to 1000 characters, e.g. "
            "`conveyor incident open \"payments failing\"`"
        )
    return title.strip()


class IncidentTracker:
    """Opens and closes incidents, from alerts or by hand."""

    def __init__(
        self, backend: IncidentBackend, *, dashboard_url: str | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.backend = backend
        self.dashboard_url = check_dashboard_url(dashboard_url)
        self.events = events

    def url(self, incident_id: int) -> str | None:
        return f"{self.dashboard_url}/incidents/{incident_id}" if self.dashboard_url else None

    def _publish(self, kind: str, incident_id: int, details: dict[str, Any], actor: str,
                 at: float | None) -> None:
        if self.events is not None:
            self.events.publish(OpsEvent(kind, f"incident:{incident_id}", details, actor=actor,
                                         at=at))

    # -- from alerts --------------------------------------------------------------------
    def alert_changed(self, alert: Alert) -> Alert:
        if alert.severity != "page":
            return alert
        if alert.status == "firing":
            title = f"{alert.objective} ({alert.sli}) is burning its error budget"
            if alert.task:
                title += f": task {alert.task}"
            incident_id, new = self.backend.incident_open(
                title, f"alert:{alert.key}", alert_key=alert.key, details=alert.to_json(),
                at=alert.at,
            )
            if new:
                self._publish("incident.opened", incident_id, {"title": title,
                              "alert": alert.key}, "", alert.at)
        else:
            found = self.backend.incident_open_for_alert(alert.key)
            if found is not None:
                if self.backend.incident_close(found, f"alert:{alert.key}",
                                               details=alert.to_json(), at=alert.at):
                    self._publish("incident.closed", found, {"alert": alert.key}, "", alert.at)
            else:  # closed by hand, or a resolve sent again: link the latest one
                found = next((i.id for i in self.backend.incident_list(limit=50)
                              if i.alert_key == alert.key), None)
            if found is None:
                return alert
            incident_id = found
        return dataclasses.replace(alert, incident=incident_id,
                                   incident_url=self.url(incident_id))

    # -- by hand --------------------------------------------------------------------------
    def open(self, title: str, by: str, *, details: dict[str, Any] | None = None) -> int:
        title = check_title(title)
        incident_id, _ = self.backend.incident_open(title, by, details=details or {})
        self._publish("incident.opened", incident_id, {"title": title}, by, None)
        return incident_id

    def close(self, incident_id: int, by: str, *, note: str = "") -> bool:
        closed = self.backend.incident_close(incident_id, by, details={"note": note})
        if closed:
            self._publish("incident.closed", incident_id, {"note": note}, by, None)
        return closed


__all__ = ["IncidentBackend", "IncidentTracker", "check_title"]
