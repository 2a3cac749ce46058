"""Every endpoint checks the role: the whole matrix of roles x endpoints, walked."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import JobState, Workflow
from conveyor.backends.base import FetchParams, JobFilter, StepSave
from conveyor.testing import drain
from conveyor.web import create_token
from conveyor.web.app import api_endpoints
from conveyor.web.auth import Permission
from tests.web.conftest import Web

ROLES = ["viewer", "enqueuer", "operator", "admin"]
MAY = {
    "viewer": {Permission.READ},
    "enqueuer": {Permission.ENQUEUE},
    "operator": {Permission.READ, Permission.ENQUEUE, Permission.OPERATE},
    "admin": set(Permission),
}


def request_for(web: Web, method: str, path: str) -> dict[str, Any]:
    """A request each endpoint would accept from a caller with the right role."""
    template = path
    if path == "/jobs/{job_id}/retry":
        if not web.app.backend.job_list(JobFilter(states=[JobState.DEAD], limit=1)):
            web.app.get_task("poison").enqueue(1)
            drain(web.app, queues=["default"], timeout=10)
        job_id = web.app.backend.job_list(JobFilter(states=[JobState.DEAD], limit=1))[0].id
    else:
        job_id = web.app.get_task("add").using(delay=3600, queue="later").enqueue(1).id
    token_id = web.app.backend.token_list()[0].id
    if "{incident_id}" in path:
        path = path.replace("{incident_id}", str(web.app.incidents.open("t", by="test")))
    if path == "/jobs/{job_id}/signal":
        # a job inside ctx.wait_for("approval") (its worker holds it, about to give it
        # back): the one a signal may wake
        web.app.get_task("add").using(queue="approvals").enqueue(1)
        [held] = web.app.backend.job_fetch(FetchParams("roles", ["approvals"], 1, 3600.0, start=1))
        assert web.app.backend.step_save(StepSave(held.id, held.lease_token, "signal:approval",
                                                  "-", "waiting", wake_in=3600.0))
        job_id = held.id
    if "{workflow_id}" in path:
        flow = Workflow("roles")
        flow.add(web.app.get_task("add").using(delay=3600).prepare(1))
        path = path.replace("{workflow_id}", web.app.enqueue_workflow(flow).id)
    if "{name}" in path:
        web.app.limit("stripe", rate="25/s")
        web.app.declare_limits()
        path = path.replace("{name}", "stripe")
    concrete = (
        path.replace("{job_id}", str(job_id))
        .replace("{queue}", "mail")
        .replace("{token_id}", str(token_id))
    )
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/jobs"): {"task": "add", "args": [1]},
        ("POST", "/jobs/bulk"): {"jobs": [{"task": "add", "args": [1]}]},
        ("POST", "/dlq/retry"): {"task": "nothing-matches"},
        ("POST", "/dlq/purge"): {"task": "nothing-matches"},
        ("POST", "/tokens"): {"name": "made-in-test", "role": "viewer"},
        ("POST", "/annotations"): {"text": "deployed v1.4.2"},
        ("POST", "/jobs/{job_id}/signal"): {"name": "approval", "payload": {"ok": True}},
        ("POST", "/limits/{name}"): {"rate": "10/s"},
    }
    request: dict[str, Any] = {"method": method, "url": "/api/v1" + concrete}
    if (method, template) in bodies:
        request["json"] = bodies[(method, template)]
    return request


@pytest.mark.parametrize("role", [*ROLES, None])
def test_every_endpoint_answers_each_role_as_the_matrix_says(web: Web, role: str | None) -> None:
    checked = 0
    for endpoint in api_endpoints():
        if endpoint.method == "DELETE" and role == "admin":
            # Revoking would invalidate a token the loop still uses: revoke a spare one.
            create_token(web.app.backend, name="spare", role="viewer")
        request = request_for(web, endpoint.method, endpoint.path)
        if endpoint.method == "DELETE":
            request["url"] = request["url"].rsplit("/", 1)[0] + "/" + str(
                web.app.backend.token_list()[-1].id
            )
        r = web.client.request(**request, headers=web.as_role(role))
        where = f"{endpoint.method} {endpoint.path} as {role}"
        if endpoint.permission is None:
            assert r.status_code < 400, (where, r.text)
        elif role is None:
            assert r.status_code == 401, (where, r.text)
        elif endpoint.permission in MAY[role]:
            assert r.status_code < 400, (where, r.status_code, r.text)
        else:
            assert r.status_code == 403, (where, r.status_code, r.text)
            assert r.json()["type"] == "urn:conveyor:problem:forbidden"
        checked += 1
    assert checked == len(api_endpoints()) >= 17
