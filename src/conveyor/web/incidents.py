"""Incidents on the web: the API (annotations for deploy pipelines, the event log,
incidents and their drafts, the detectors) and the dashboard's incident pages.

The pages are server-rendered (no script, under the dashboard's CSP): a list of
incidents, and one page per incident with its summary, a per-minute chart of
finished and failed attempts, the merged timeline and the top errors. Alert
notices link to that page when the app is given its `dashboard_url`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from conveyor.backends.base import EventFilter, IncidentRecord
from conveyor.errors import OperationError
from conveyor.incidents.draft import iso
from conveyor.incidents.service import Incidents, event_json, incident_json
from conveyor.web.api import JOB_ID, LIST_MAX, TIME, _time_param
from conveyor.web.auth import Permission, Principal
from conveyor.web.dashboard import _render, _state, page
from conveyor.web.problems import Problem
from conveyor.web.routing import (
    CURSOR_PATTERN,
    INVALID_CURSOR,
    ApiEndpoint,
    ApiRequest,
    Param,
    Reply,
    decode_cursor,
    encode_cursor,
)
from conveyor.web.schema import obj, text
from conveyor.web.views import sparkline


def _incidents(call: ApiRequest) -> Incidents:
    return call.state.conveyor.incidents


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def _incident_out(incident: IncidentRecord, url: str | None) -> dict[str, Any]:
    data = incident_json(incident, url)
    data["opened_at"], data["closed_at"] = _iso(incident.opened_at), _iso(incident.closed_at)
    return data


# -- API handlers ----------------------------------------------------------------------
def annotate(call: ApiRequest) -> Reply:
    body = call.body
    kind = body.get("kind") or ""
    call.state.conveyor.operations.annotate(
        body["text"], actor=call.actor, source=call.client, subject=body.get("subject") or "",
        kind=f"annotation.{kind}" if kind else "annotation",
    )
    return Reply(201, {"annotated": True, "kind": f"annotation.{kind}" if kind else "annotation",
                       "text": body["text"]})


def list_events(call: ApiRequest) -> Reply:
    q = call.query
    limit = q.get("limit", 100)
    before = decode_cursor(q["cursor"]) if "cursor" in q else None
    found = _incidents(call).events(EventFilter(
        since=_time_param(call, "since"), until=_time_param(call, "until"),
        kind=q.get("kind"), before_id=before, limit=limit + 1))
    page_ = found[:limit]
    more = len(found) > limit
    return Reply(200, {
        "events": [{**event_json(e), "at": _iso(e.at)} for e in page_],
        "next_cursor": encode_cursor(page_[-1].id) if more and page_ else None,
    })


def list_incidents(call: ApiRequest) -> Reply:
    q = call.query
    limit = q.get("limit", 50)
    before = decode_cursor(q["cursor"]) if "cursor" in q else None
    incidents = _incidents(call)
    found = incidents.list_incidents(open_only=bool(q.get("open", False)), before_id=before,
                                     limit=limit + 1)
    page_ = found[:limit]
    more = len(found) > limit
    return Reply(200, {
        "incidents": [_incident_out(i, incidents.url(i.id)) for i in page_],
        "next_cursor": encode_cursor(page_[-1].id) if more and page_ else None,
    })


def _incident_or_404(call: ApiRequest) -> IncidentRecord:
    try:
        return _incidents(call).get(call.path["incident_id"])
    except OperationError as exc:
        raise Problem("not-found", str(exc)) from None


def get_incident(call: ApiRequest) -> Reply:
    incident = _incident_or_404(call)
    incidents = _incidents(call)
    draft = incidents.draft(incident.id)
    timeline = [{**t, "at": _iso(t["at"])} for t in draft.data["timeline"]]
    return Reply(200, {**_incident_out(incident, incidents.url(incident.id)),
                       "timeline": timeline})


def draft_incident(call: ApiRequest) -> Reply:
    incident = _incident_or_404(call)
    draft = _incidents(call).draft(incident.id)
    return Reply(200, {"draft": draft.data, "markdown": draft.markdown})


def list_detectors(call: ApiRequest) -> Reply:
    results = _incidents(call).detect()
    return Reply(200, {"firing": [r.name for r in results if r.firing],
                       "detectors": [r.to_json() for r in results]})


# -- schemas and the endpoint table -------------------------------------------------------
ANY_OBJECT: dict[str, Any] = {"type": "object"}
NULL_TEXT = {"type": ["string", "null"]}
NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
EVENT = obj({
    "id": {"type": "integer"}, "at": TIME, "kind": {"type": "string"},
    "subject": {"type": "string"}, "actor": {"type": "string"}, "details": ANY_OBJECT,
})
INCIDENT_PROPS: dict[str, Any] = {
    "id": {"type": "integer"}, "title": {"type": "string"}, "opened_at": TIME,
    "closed_at": NULL_TIME, "status": {"type": "string", "enum": ["open", "resolved"]},
    "alert": NULL_TEXT, "opened_by": {"type": "string"}, "closed_by": NULL_TEXT,
    "details": ANY_OBJECT, "close_details": ANY_OBJECT,
    "url": {**NULL_TEXT, "description": "The incident's dashboard page (when the app "
            "knows its dashboard_url)."},
}
INCIDENT = obj(INCIDENT_PROPS)
TIMELINE_ITEM = obj({
    "at": TIME, "source": {"type": "string"}, "kind": {"type": "string"},
    "subject": {"type": "string"}, "actor": {"type": "string"}, "text": {"type": "string"},
})
NEXT = {"type": ["string", "null"],
        "description": "Pass as ?cursor= for the next page; null on the last."}
CURSOR = Param("cursor", "query", {"type": "string", "pattern": CURSOR_PATTERN,
                                   "maxLength": 64},
               "next_cursor of the previous page.", invalid=INVALID_CURSOR)
INCIDENT_ID = Param("incident_id", "path", JOB_ID, "The incident's id.")
ANNOTATION = obj({
    "text": {**text(1, 2000), "description": "What changed, e.g. `deployed v1.4.2`."},
    "kind": {**text(1, 80, pattern=r"^[A-Za-z0-9_]+$",
                    message="must be one word of letters, digits and _"),
             "description": "A family under annotation (`deploy` -> `annotation.deploy`)."},
    "subject": {**text(1, 1000), "description": "What it is about, e.g. the version."},
}, required=("text",))

INCIDENT_ENDPOINTS: list[ApiEndpoint] = [
    ApiEndpoint("POST", "/annotations", "annotate", "Write an annotation into the event log",
                Permission.OPERATE, annotate,
                {201: ("Stored.", obj({"annotated": {"type": "boolean"},
                                       "kind": {"type": "string"},
                                       "text": {"type": "string"}}))},
                body=ANNOTATION, tag="incidents",
                description="For deploy pipelines: `deployed v1.4.2`, stored at once in the "
                            "operational event log, where incident drafts list it under what "
                            "changed just before. Operator role."),
    ApiEndpoint("GET", "/events", "list_events", "The operational event log, newest first",
                Permission.READ, list_events,
                {200: ("A page of events.", obj({"events": {"type": "array", "items": EVENT},
                                                 "next_cursor": NEXT}))},
                params=(
                    Param("since", "query", TIME, "Events at or after."),
                    Param("until", "query", TIME, "Events before."),
                    Param("kind", "query", text(1, 100),
                          "A kind (alert.fired) or a family (alert, worker, queue...)."),
                    Param("limit", "query", {"type": "integer", "minimum": 1,
                                             "maximum": LIST_MAX}, "Page size (default 100)."),
                    CURSOR,
                ), problems=("invalid-cursor",), tag="incidents"),
    ApiEndpoint("GET", "/incidents", "list_incidents", "Incidents, newest first",
                Permission.READ, list_incidents,
                {200: ("A page of incidents.", obj({
                    "incidents": {"type": "array", "items": INCIDENT}, "next_cursor": NEXT}))},
                params=(
                    Param("open", "query", {"type": "boolean"}, "Only the open ones."),
                    Param("limit", "query", {"type": "integer", "minimum": 1,
                                             "maximum": LIST_MAX}, "Page size (default 50)."),
                    CURSOR,
                ), problems=("invalid-cursor",), tag="incidents"),
    ApiEndpoint("GET", "/incidents/{incident_id}", "get_incident",
                "An incident with its timeline", Permission.READ, get_incident,
                {200: ("The incident.", obj({
                    **INCIDENT_PROPS, "timeline": {"type": "array", "items": TIMELINE_ITEM}}))},
                params=(INCIDENT_ID,), tag="incidents"),
    ApiEndpoint("GET", "/incidents/{incident_id}/draft", "draft_incident",
                "The incident's postmortem draft (JSON and Markdown)", Permission.READ,
                draft_incident,
                {200: ("The draft.", obj({"draft": ANY_OBJECT,
                                          "markdown": {"type": "string"}}))},
                params=(INCIDENT_ID,), tag="incidents"),
    ApiEndpoint("GET", "/detectors", "list_detectors", "Run the silent-failure detectors once",
                Permission.READ, list_detectors,
                {200: ("Each detector and what it saw.", obj({
                    "firing": {"type": "array", "items": {"type": "string"}},
                    "detectors": {"type": "array", "items": ANY_OBJECT}}))},
                tag="incidents"),
]


# -- dashboard pages -------------------------------------------------------------------
@page(Permission.READ)
async def incidents_page(request: Request, principal: Principal) -> Response:
    state = _state(request)

    def read() -> dict[str, Any]:
        incidents = state.conveyor.incidents
        found = incidents.list_incidents(limit=100)
        return {"incidents": [{**incident_json(i), "opened": iso(i.opened_at),
                               "closed": iso(i.closed_at)} for i in found],
                "detectors": [r.to_json() for r in incidents.detect()]}

    data = await run_in_threadpool(read)
    return _render(request, "incidents.html", principal=principal, nav="incidents", **data)


@page(Permission.READ)
async def incident_page(request: Request, principal: Principal) -> Response:
    state = _state(request)
    raw = request.path_params["incident_id"]
    if not raw.isdigit() or not 1 <= int(raw) <= 2**63 - 1:
        return _render(request, "error.html", status=404, principal=principal,
                       title="Not found", detail=f"no incident {raw[:40]!r}")

    def read() -> dict[str, Any] | None:
        incidents = state.conveyor.incidents
        try:
            incident = incidents.get(int(raw))
        except OperationError:
            return None
        draft = incidents.draft(incident.id)
        return {"incident": incident_json(incident), "draft": draft.data,
                "opened": iso(incident.opened_at), "closed": iso(incident.closed_at),
                # per minute: succeeded, retried, dead (stacked)
                "chart": sparkline([(m["attempts"] - m["failed"], m["failed"] - m["dead"],
                                     m["dead"]) for m in draft.data["minutes"]]),
                "timeline": [{**t, "when": iso(t["at"])} for t in draft.data["timeline"]],
                "errors": [{**e, "first": iso(e["first_seen"]), "last": iso(e["last_seen"])}
                           for e in draft.data["top_errors"]]}

    data = await run_in_threadpool(read)
    if data is None:
        return _render(request, "error.html", status=404, principal=principal,
                       title="Not found", detail=f"no incident {raw}: see the incident list")
    return _render(request, "incident.html", principal=principal, nav="incidents", iso=iso,
                   **data)


def incident_routes() -> list[BaseRoute]:
    return [
        Route("/incidents", incidents_page, methods=["GET"], name="incidents"),
        Route("/incidents/{incident_id}", incident_page, methods=["GET"], name="incident"),
    ]


__all__ = ["INCIDENT_ENDPOINTS", "incident_routes"]
