"""The incident API (annotations for deploy pipelines, events, incidents, drafts,
detectors) and the dashboard's incident pages, on both backends."""

from __future__ import annotations

import re

from conveyor.backends.base import EventFilter
from tests.web.conftest import Web
from tests.web.test_dashboard import sign_in


def test_a_deploy_pipeline_annotates_with_an_operator_token_and_a_viewer_cannot(
    web: Web,
) -> None:
    body = {"text": "deployed v1.4.2", "kind": "deploy", "subject": "v1.4.2"}
    denied = web.client.post("/api/v1/annotations", json=body, headers=web.as_role("viewer"))
    assert denied.status_code == 403
    for _ in range(2):  # the same call twice: two annotations (a deploy may be repeated)
        ok = web.client.post("/api/v1/annotations", json=body, headers=web.as_role("operator"))
        assert ok.status_code == 201, ok.text
        assert ok.json() == {"annotated": True, "kind": "annotation.deploy",
                             "text": "deployed v1.4.2"}
    for bad in ({}, {"text": ""}, {"text": "x" * 2001}, {"text": "ok", "kind": "a b"},
                {"text": "ok", "extra": 1}):
        r = web.client.post("/api/v1/annotations", json=bad, headers=web.as_role("operator"))
        assert r.status_code == 422, (bad, r.text)
    stored = web.app.backend.event_list(EventFilter(kind="annotation"))
    assert [(e.kind, e.subject, e.details["text"]) for e in stored] == [
        ("annotation.deploy", "v1.4.2", "deployed v1.4.2")] * 2
    assert all(e.actor.startswith("token:test-operator") for e in stored)
    events = web.client.get("/api/v1/events?kind=annotation&limit=1",
                            headers=web.as_role("viewer")).json()
    assert len(events["events"]) == 1 and events["next_cursor"]
    more = web.client.get(f"/api/v1/events?kind=annotation&cursor={events['next_cursor']}",
                          headers=web.as_role("viewer")).json()
    assert len(more["events"]) == 1 and more["next_cursor"] is None


def test_incidents_read_through_the_api_and_on_their_dashboard_page(web: Web) -> None:
    incident_id = web.app.incidents.open("payments failing", by="cli:ann@host")
    viewer = web.as_role("viewer")
    listed = web.client.get("/api/v1/incidents", headers=viewer).json()
    assert [(i["id"], i["status"], i["title"]) for i in listed["incidents"]] == [
        (incident_id, "open", "payments failing")]
    one = web.client.get(f"/api/v1/incidents/{incident_id}", headers=viewer)
    assert one.status_code == 200 and one.json()["timeline"]
    draft = web.client.get(f"/api/v1/incidents/{incident_id}/draft", headers=viewer).json()
    assert draft["markdown"].startswith(f"# Incident {incident_id}: payments failing")
    assert web.client.get("/api/v1/incidents/999999", headers=viewer).status_code == 404
    detectors = web.client.get("/api/v1/detectors", headers=viewer).json()
    assert detectors["firing"] == [] and len(detectors["detectors"]) == 6

    client = sign_in(web, "viewer")
    page = client.get(f"/incidents/{incident_id}")
    assert page.status_code == 200
    assert "payments failing" in page.text and 'id="timeline"' in page.text
    # the only script is the dashboard's own file (live updates), nothing inline
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/live.js" defer>']
    assert "default-src 'none'" in page.headers["content-security-policy"]
    listing = client.get("/incidents")
    assert listing.status_code == 200 and f'href="/incidents/{incident_id}"' in listing.text
    assert 'data-detector="unserved_queue"' in listing.text
    for missing in ("999999", "abc", "0"):
        assert client.get(f"/incidents/{missing}").status_code == 404


def test_the_dashboard_says_no_worker_instead_of_running_for_an_unserved_queue(
    web: Web,
) -> None:
    web.app.get_task("send_mail").enqueue("a@example.com", "hi")  # queue "mail": nobody serves
    page = sign_in(web, "viewer").get("/workers")
    assert page.status_code == 200 and "no worker" in page.text
