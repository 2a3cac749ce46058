"""The dashboard over HTTP: sign-in, anti-forgery, pages, actions and their confirmations."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from conveyor import JobState
from conveyor.backends.base import FetchParams, JobFilter
from conveyor.testing import drain
from tests.web.conftest import Web


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(web: Web, role: str) -> TestClient:
    client = web.client
    page = client.get("/login")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "token": web.tokens[role],
                                    "next": "/dlq"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dlq"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    return client


def dead_job(web: Web) -> int:
    job = web.app.get_task("poison").enqueue(42)
    drain(web.app, timeout=10)
    return job.id


def test_pages_need_a_sign_in_and_a_bad_token_is_refused(web: Web) -> None:
    r = web.client.get("/jobs?state=dead", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    page = web.client.get("/login")
    r = web.client.post("/login", data={"csrf": csrf_of(page.text), "token": "cvy_nope"})
    assert r.status_code == 401 and "unknown" in r.text
    # An enqueue-only token cannot read the dashboard.
    r = web.client.post("/login", data={"csrf": csrf_of(page.text),
                                        "token": web.tokens["enqueuer"]})
    assert r.status_code == 401


def test_sign_in_never_redirects_off_site(web: Web) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        page = web.client.get("/login")
        r = web.client.post("/login", data={"csrf": csrf_of(page.text),
                                            "token": web.tokens["viewer"], "next": target},
                            follow_redirects=False)
        assert r.headers["location"] == "/", target


def test_every_page_renders_the_state_read_from_the_database(web: Web) -> None:
    job_id = dead_job(web)
    web.app.get_task("send_mail").enqueue("a@b", "hi")
    client = sign_in(web, "viewer")
    overview = client.get("/")
    assert overview.status_code == 200
    assert 'data-queue="default"' in overview.text and 'data-queue="mail"' in overview.text
    assert "<svg" in overview.text and "1 dead job" in overview.text
    jobs = client.get("/jobs?state=dead")
    assert f'data-job="{job_id}"' in jobs.text and "cannot handle record" in jobs.text
    assert 'data-job="' not in client.get("/jobs?state=dead&task=add").text
    assert f'data-job="{job_id}"' in client.get("/jobs?error=record+42").text
    detail = client.get(f"/jobs/{job_id}")
    assert "Discard" in detail.text and "cannot handle record 42" in detail.text
    assert "[42]" in detail.text
    assert 'id="retry"' not in detail.text  # a viewer sees no action buttons
    dlq = client.get("/dlq")
    assert "conveyor.errors.Discard" in dlq.text and "Retry all" not in dlq.text
    assert client.get("/workers").status_code == 200
    assert client.get("/jobs/999999").status_code == 404
    assert client.get("/jobs/abc").status_code == 404
    # The one script is our own file: no inline script anywhere.
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", overview.text + jobs.text + detail.text
                         + dlq.text, re.S)
    assert scripts == ["", "", "", ""]
    assert set(re.findall(r"<script([^>]*)>", overview.text + dlq.text)) == {
        ' src="/static/live.js" defer'}


def test_a_viewer_cannot_act_even_with_a_valid_form(web: Web) -> None:
    job_id = dead_job(web)
    client = sign_in(web, "viewer")
    token = csrf_of(client.get("/jobs").text)
    r = client.post(f"/jobs/{job_id}/retry", data={"csrf": token})
    assert r.status_code == 403
    assert web.app.backend.job_get(job_id).state is JobState.DEAD  # type: ignore[union-attr]


def test_actions_without_the_anti_forgery_token_or_from_another_origin_change_nothing(
    web: Web,
) -> None:
    job_id = dead_job(web)
    client = sign_in(web, "operator")
    token = csrf_of(client.get(f"/jobs/{job_id}").text)
    for data, headers in [
        ({}, {}),
        ({"csrf": "forged"}, {}),
        ({"csrf": token}, {"Origin": "https://evil.example"}),
        ({"csrf": token}, {"Origin": "null"}),
    ]:
        r = client.post(f"/jobs/{job_id}/retry", data=data, headers=headers)
        assert r.status_code == 403, (data, headers)
    assert web.app.backend.job_get(job_id).state is JobState.DEAD  # type: ignore[union-attr]
    r = client.post(f"/jobs/{job_id}/retry", data={"csrf": token},
                    headers={"Origin": "http://127.0.0.1"}, follow_redirects=False)
    assert r.status_code == 303
    assert web.app.backend.job_get(job_id).state is JobState.AVAILABLE  # type: ignore[union-attr]


def test_cancel_from_the_job_page(web: Web) -> None:
    job = web.app.get_task("add").using(delay=600).enqueue(1)
    client = sign_in(web, "operator")
    page = client.get(f"/jobs/{job.id}")
    assert 'id="cancel"' in page.text
    r = client.post(f"/jobs/{job.id}/cancel", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 200 and "Job cancelled." in r.text
    again = client.post(f"/jobs/{job.id}/cancel", data={"csrf": csrf_of(page.text)})
    assert again.status_code == 409


def test_dead_letter_groups_retry_all_and_purge_ask_for_confirmation(web: Web) -> None:
    for n in range(3):
        web.app.get_task("poison").enqueue(n)
    web.app.get_task("flaky").enqueue("x")
    drain(web.app, timeout=20)
    client = sign_in(web, "operator")
    dlq = client.get("/dlq")
    fingerprints = re.findall(r'data-fingerprint="([0-9a-f]+)"', dlq.text)
    assert len(fingerprints) == 2
    poison = fingerprints[0]
    confirm = client.get(f"/dlq/confirm?action=retry&fingerprint={poison}")
    assert "Retry 3 dead jobs?" in confirm.text
    # Without the confirmation field nothing happens.
    r = client.post("/dlq/retry", data={"csrf": csrf_of(confirm.text), "fingerprint": poison})
    assert r.status_code == 409
    r = client.post("/dlq/retry", data={"csrf": csrf_of(confirm.text), "fingerprint": poison,
                                        "confirm": "yes"})
    assert "Retried 3 job(s)." in r.text
    dead = web.app.backend.job_list(JobFilter(states=[JobState.DEAD]))
    assert [j.task for j in dead] == ["flaky"]
    other = fingerprints[1]
    confirm = client.get(f"/dlq/confirm?action=purge&fingerprint={other}")
    assert "Purge 1 dead job?" in confirm.text and "deleted for good" in confirm.text
    r = client.post("/dlq/purge", data={"csrf": csrf_of(confirm.text), "fingerprint": other,
                                        "confirm": "yes"})
    assert "Purged 1 job(s)." in r.text
    assert web.app.backend.job_list(JobFilter(states=[JobState.DEAD])) == []
    assert client.get("/dlq/confirm?action=retry&fingerprint=" + other).status_code == 404


def test_pause_and_resume_from_the_workers_page(web: Web) -> None:
    web.app.get_task("send_mail").enqueue("a", "b")
    client = sign_in(web, "operator")
    page = client.get("/workers")
    r = client.post("/queues/mail/pause", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 200 and "paused since" in r.text
    assert web.app.backend.job_fetch(FetchParams("w", ["mail"], 1, 30.0)) == []
    r = client.post("/queues/mail/resume", data={"csrf": csrf_of(r.text)})
    assert "paused since" not in r.text
    assert len(web.app.backend.job_fetch(FetchParams("w", ["mail"], 1, 30.0))) == 1


def test_sign_out_ends_the_session(web: Web) -> None:
    client = sign_in(web, "viewer")
    page = client.get("/")
    session = client.cookies["conveyor_session"]
    r = client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303
    # Ended on the server: a copy of the cookie kept from before is refused too.
    client.cookies.set("conveyor_session", session)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_dashboard_works_when_mounted_under_a_prefix(web_factory: Any) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from conveyor.web import create_app

    web = web_factory(auth=False)
    outer = Starlette(routes=[Mount("/ops/conveyor", create_app(web.app, auth=False))])
    client = TestClient(outer, base_url="http://127.0.0.1")
    page = client.get("/ops/conveyor/")
    assert page.status_code == 200 and 'href="/ops/conveyor/static/style.css"' in page.text
    assert client.get("/ops/conveyor/static/style.css").status_code == 200
    r = client.post("/ops/conveyor/api/v1/jobs", json={"task": "add", "args": [1]})
    assert r.status_code == 201 and r.headers["location"].startswith("/ops/conveyor/api/v1/")
