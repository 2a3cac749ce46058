"""Workflows over HTTP: the API (as its OpenAPI document says) and the dashboard page
that draws the graph with each node's state, server-side (no script but the live updates)."""

from __future__ import annotations

import re

from conveyor import chord
from conveyor.testing import drain
from tests.web.conftest import Web
from tests.web.test_dashboard import csrf_of, sign_in


def _chord(web: Web) -> str:
    add, count = web.app.get_task("add"), web.app.get_task("flexible")
    handle = web.app.enqueue_workflow(
        chord([add.prepare(1, 2), add.prepare(3, 4)], count.prepare_partial(), name="sums"))
    return handle.id


def test_the_api_shows_a_workflow_as_nodes_and_edges_and_cancels_its_pending_nodes(
    web: Web,
) -> None:
    workflow_id = _chord(web)
    viewer, operator = web.as_role("viewer"), web.as_role("operator")
    r = web.client.get(f"/api/v1/workflows/{workflow_id}", headers=viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "sums" and body["counts"] == {"available": 2, "pending": 1}
    callback = body["nodes"][2]
    assert callback["state"] == "pending" and callback["waiting_for"] == 2
    assert {(e["parent"], e["child"]) for e in body["edges"]} == {
        (body["nodes"][0]["job_id"], callback["job_id"]),
        (body["nodes"][1]["job_id"], callback["job_id"])}
    listed = web.client.get("/api/v1/workflows", headers=viewer).json()["workflows"]
    assert [w["id"] for w in listed] == [workflow_id]
    assert web.client.post(f"/api/v1/workflows/{workflow_id}/cancel",
                           headers=viewer).status_code == 403
    r = web.client.post(f"/api/v1/workflows/{workflow_id}/cancel", headers=operator)
    assert r.status_code == 200 and r.json()["cancelled"] == 3
    assert r.json()["workflow"]["counts"] == {"cancelled": 3}
    again = web.client.post(f"/api/v1/workflows/{workflow_id}/cancel", headers=operator)
    assert again.json()["cancelled"] == 0
    missing = web.client.get(f"/api/v1/workflows/{'0' * 32}", headers=viewer)
    assert missing.status_code == 404
    assert web.client.get("/api/v1/workflows/not-hex", headers=viewer).status_code == 404
    document = web.client.get("/api/v1/openapi.json", headers=viewer).json()
    assert {"/api/v1/workflows", "/api/v1/workflows/{workflow_id}",
            "/api/v1/workflows/{workflow_id}/cancel"} <= set(document["paths"])


def test_the_dashboard_draws_the_workflow_graph_with_each_nodes_state(web: Web) -> None:
    workflow_id = _chord(web)
    client = sign_in(web, "operator")
    page = client.get(f"/workflows/{workflow_id}")
    assert page.status_code == 200
    html = page.text
    # the only script is the dashboard's own file (live updates), nothing inline
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/live.js" defer>']
    assert 'id="workflow-graph"' in html
    states = re.findall(r'data-state="(\w+)"', html)
    assert states == ["available", "available", "pending"]
    assert len(re.findall(r'<line class="edge"', html)) == 2
    assert workflow_id in client.get("/workflows").text
    drain(web.app, timeout=20)
    html = client.get(f"/workflows/{workflow_id}").text
    assert re.findall(r'data-state="(\w+)"', html) == ["succeeded"] * 3
    assert 'id="cancel-workflow"' not in html  # nothing left to cancel

    second = _chord(web)
    page = client.get(f"/workflows/{second}").text
    r = client.post(f"/workflows/{second}/cancel", data={"csrf": csrf_of(page)},
                    follow_redirects=False)
    assert r.status_code == 303
    html = client.get(r.headers["location"]).text
    assert "cancelled 3 node(s)" in html
    assert re.findall(r'data-state="(\w+)"', html) == ["cancelled"] * 3
    assert client.get("/workflows/nope").status_code == 404
