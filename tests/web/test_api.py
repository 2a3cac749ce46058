"""The HTTP API, endpoint by endpoint, on every backend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import JobState
from conveyor.backends.base import FetchParams, JobFilter
from conveyor.testing import drain
from tests.web.conftest import Web

PROBLEM = "application/problem+json"


def problem_type(response: Any) -> str:
    assert response.headers["content-type"].startswith(PROBLEM), response.text
    body = response.json()
    assert "Traceback" not in response.text
    return str(body["type"]).removeprefix("urn:conveyor:problem:")


def enqueue(web: Web, body: dict[str, Any], role: str = "operator", **headers: str) -> Any:
    return web.client.post("/api/v1/jobs", json=body, headers={**web.as_role(role), **headers})


# -- enqueue -----------------------------------------------------------------------------
def test_enqueue_stores_the_job_and_answers_201_with_it(web: Web) -> None:
    r = enqueue(web, {"task": "add", "args": [2], "kwargs": {"b": 3},
                      "options": {"priority": 1, "tags": ["x"]}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert (job["task"], job["queue"], job["state"], job["priority"]) == ("add", "default",
                                                                          "available", 1)
    assert r.headers["location"] == f"/api/v1/jobs/{job['id']}"
    record = web.app.backend.job_get(job["id"])
    assert record is not None and record.args == [2] and record.kwargs == {"b": 3}
    drain(web.app, timeout=10)
    assert web.client.get(f"/api/v1/jobs/{job['id']}",
                          headers=web.as_role("viewer")).json()["result"] == 5


def test_enqueue_uses_the_tasks_queue_and_every_option(web: Web) -> None:
    run_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = enqueue(web, {"task": "send_mail", "kwargs": {"to": "a@b", "subject": "hi"},
                      "options": {"run_at": run_at, "max_attempts": 3, "timeout": 2.5,
                                  "group": "g1"}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert (job["queue"], job["state"], job["max_attempts"], job["timeout"], job["group"]) == (
        "mail", "scheduled", 3, 2.5, "g1")
    r = enqueue(web, {"task": "add", "args": [1], "options": {"queue": "other", "delay": 60}})
    assert (r.json()["queue"], r.json()["state"]) == ("other", "scheduled")


def test_a_wrong_argument_is_a_422_that_names_it(web: Web) -> None:
    cases = [
        ({"task": "add", "args": ["two"]}, "a", "must be int"),
        ({"task": "add", "kwargs": {"a": 1, "c": 2}}, "c", "unknown argument 'c'"),
        ({"task": "add", "kwargs": {"b": 2}}, "a", "missing required argument 'a'"),
        ({"task": "add", "args": [1, 2, 3]}, "2", "at most 2 positional"),
        ({"task": "add", "args": [1], "kwargs": {"a": 1}}, "a", "given twice"),
        ({"task": "send_mail", "args": ["x", "y", True]}, "2", "at most 2 positional"),
        ({"task": "send_mail", "args": ["x", "y"], "kwargs": {"urgent": "yes"}}, "urgent",
         "must be bool"),
    ]
    for body, argument, text in cases:
        r = enqueue(web, body)
        assert r.status_code == 422, (body, r.text)
        assert problem_type(r) == "invalid-arguments"
        assert r.json()["argument"] == argument and text in r.json()["detail"], r.json()
    assert web.app.backend.job_list(JobFilter()) == []


def test_var_args_and_kwargs_accept_anything_json(web: Web) -> None:
    r = enqueue(web, {"task": "flexible", "args": [1, "x"], "kwargs": {"k": [1, {"a": None}]}})
    assert r.status_code == 201, r.text


def test_unknown_fields_and_bad_types_are_refused_with_a_pointer(web: Web) -> None:
    for body, pointer in [
        ({"task": "add", "args": [1], "extra": 1}, "/extra"),
        ({"task": "add", "args": [1], "options": {"prio": 1}}, "/options/prio"),
        ({"task": "add", "args": [1], "options": {"priority": 10}}, "/options/priority"),
        ({"task": "add", "args": [1], "options": {"delay": -1}}, "/options/delay"),
        ({"task": "add", "args": [1], "options": {"run_at": "tomorrow"}}, "/options/run_at"),
        ({"task": "add", "args": {"a": 1}}, "/args"),
        ({"args": [1]}, "/task"),
        ([1, 2], "/"),
    ]:
        r = enqueue(web, body)  # type: ignore[arg-type]
        assert r.status_code == 422, (body, r.text)
        assert problem_type(r) == "validation-error"
        assert pointer in [e["pointer"] for e in r.json()["errors"]], r.json()


def test_an_unknown_task_is_a_422(web: Web) -> None:
    r = enqueue(web, {"task": "nope"})
    assert r.status_code == 422 and problem_type(r) == "unknown-task"
    assert "add" in r.json()["detail"]


def test_bad_bodies_get_their_own_problem_types(web: Web) -> None:
    headers = web.as_role("operator")
    r = web.client.post("/api/v1/jobs", content=b"{not json",
                        headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and problem_type(r) == "malformed-request"
    r = web.client.post("/api/v1/jobs", content=b'{"task": "add"}',
                        headers={**headers, "Content-Type": "text/plain"})
    assert r.status_code == 415 and problem_type(r) == "unsupported-media-type"
    r = web.client.post("/api/v1/jobs", content=b'{"task": "add", "args": [NaN]}',
                        headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and problem_type(r) == "malformed-request"
    deep = b'{"task": "flexible", "args": ' + b"[" * 100 + b"]" * 100 + b"}"
    r = web.client.post("/api/v1/jobs", content=deep,
                        headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and "deeper" in r.json()["detail"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(web_factory: Any) -> None:
    web = web_factory(max_body_bytes=2048)
    big = {"task": "flexible", "args": ["x" * 4000]}
    r = enqueue(web, big)
    assert r.status_code == 413 and problem_type(r) == "body-too-large"

    def chunks() -> Any:  # no Content-Length: the limit still holds while streaming
        for _ in range(10):
            yield b" " * 1000

    r = web.client.post("/api/v1/jobs", content=chunks(),
                        headers={**web.as_role("operator"), "Content-Type": "application/json"})
    assert r.status_code == 413


def test_idempotency_key_option_and_header_give_one_job_200_on_repeat(web: Web) -> None:
    first = enqueue(web, {"task": "add", "args": [1], "options": {"idempotency_key": "o-1"}})
    again = enqueue(web, {"task": "add", "args": [1], "options": {"idempotency_key": "o-1"}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]

    h1 = enqueue(web, {"task": "add", "args": [2]}, **{"Idempotency-Key": "h-1"})
    h2 = enqueue(web, {"task": "add", "args": [2]}, **{"Idempotency-Key": "h-1"})
    assert (h1.status_code, h2.status_code) == (201, 200)
    assert h1.json()["id"] == h2.json()["id"] and h1.json()["idempotency_key"] == "h-1"

    clash = enqueue(web, {"task": "add", "args": [2], "options": {"idempotency_key": "x"}},
                    **{"Idempotency-Key": "y"})
    assert clash.status_code == 422 and problem_type(clash) == "invalid-option"


def test_racing_idempotent_enqueues_give_one_job(web_factory: Any) -> None:
    # Six writers at once on SQLite queue for its one write lock: on a loaded machine
    # the last may wait past the 1 s enqueue deadline and get a (correct) 503 "not
    # stored". What this test is about is the race on the key, so it waits longer.
    web = web_factory(app_options={"unreachable_timeout": 10.0})
    statuses: list[int] = []
    ids: set[int] = set()
    start = threading.Barrier(6)

    def post() -> None:
        start.wait()
        r = enqueue(web, {"task": "add", "args": [1]}, **{"Idempotency-Key": "race"})
        statuses.append(r.status_code)
        ids.add(r.json()["id"])

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200] * 5 + [201] and len(ids) == 1


def test_bulk_enqueue_is_all_or_nothing(web: Web) -> None:
    headers = web.as_role("operator")
    r = web.client.post("/api/v1/jobs/bulk", headers=headers, json={"jobs": [
        {"task": "add", "args": [1]},
        {"task": "send_mail", "args": ["a", "b"]},
        {"task": "add", "args": [3], "options": {"idempotency_key": "b-1"}},
    ]})
    assert r.status_code == 201, r.text
    jobs = r.json()["jobs"]
    assert [j["job"]["task"] for j in jobs] == ["add", "send_mail", "add"]
    assert all(j["created"] for j in jobs)

    bad = web.client.post("/api/v1/jobs/bulk", headers=headers, json={"jobs": [
        {"task": "add", "args": [5]}, {"task": "add", "args": ["bad"]},
    ]})
    assert bad.status_code == 422 and bad.json()["pointer"] == "/jobs/1/args/0"
    assert len(web.client.get("/api/v1/jobs", headers=headers).json()["jobs"]) == 3

    repeat = web.client.post("/api/v1/jobs/bulk", headers=headers, json={"jobs": [
        {"task": "add", "args": [3], "options": {"idempotency_key": "b-1"}},
    ]})
    assert repeat.status_code == 200 and repeat.json()["jobs"][0]["created"] is False
    empty = web.client.post("/api/v1/jobs/bulk", headers=headers, json={"jobs": []})
    assert empty.status_code == 422


# -- reading ------------------------------------------------------------------------------
def test_list_filters_and_cursor_pagination_walk_every_job_once(web: Web) -> None:
    for i in range(7):
        enqueue(web, {"task": "add", "args": [i]})
    for _ in range(3):
        enqueue(web, {"task": "send_mail", "args": ["a", "b"]})
    headers = web.as_role("viewer")
    seen: list[int] = []
    url = "/api/v1/jobs?task=add&limit=3"
    cursor = None
    while True:
        r = web.client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=headers)
        assert r.status_code == 200, r.text
        seen.extend(j["id"] for j in r.json()["jobs"])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)

    mail = web.client.get("/api/v1/jobs?queue=mail&state=available", headers=headers).json()
    assert len(mail["jobs"]) == 3 and mail["next_cursor"] is None
    none = web.client.get("/api/v1/jobs?state=dead", headers=headers).json()
    assert none["jobs"] == []
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert web.client.get("/api/v1/jobs", params={"created_after": later},
                          headers=headers).json()["jobs"] == []
    assert len(web.client.get("/api/v1/jobs", params={"created_before": later},
                              headers=headers).json()["jobs"]) == 10


def test_list_refuses_bad_parameters(web: Web) -> None:
    headers = web.as_role("viewer")
    for query, slug in [
        ("limit=0", "validation-error"), ("limit=x", "validation-error"),
        ("state=lost", "validation-error"), ("colour=red", "validation-error"),
        ("created_after=yesterday", "validation-error"), ("queue=a&queue=b", "validation-error"),
        ("cursor=zzzz", "invalid-cursor"),
    ]:
        r = web.client.get(f"/api/v1/jobs?{query}", headers=headers)
        assert r.status_code in (400, 422) and problem_type(r) == slug, (query, r.text)


def test_error_text_filter_finds_jobs_by_their_errors(web: Web) -> None:
    enqueue(web, {"task": "poison", "args": [7]})
    enqueue(web, {"task": "add", "args": [1]})
    drain(web.app, timeout=10)
    r = web.client.get("/api/v1/jobs?error=CANNOT%20handle", headers=web.as_role("viewer"))
    assert [j["task"] for j in r.json()["jobs"]] == ["poison"]


def test_get_job_shows_every_attempt_with_its_traceback(web: Web) -> None:
    job = enqueue(web, {"task": "flaky", "args": ["t"]}).json()
    drain(web.app, timeout=10)
    r = web.client.get(f"/api/v1/jobs/{job['id']}", headers=web.as_role("viewer"))
    body = r.json()
    assert body["state"] == "dead" and [e["attempt"] for e in body["errors"]] == [1, 2]
    assert all("ValueError" in e["traceback"] for e in body["errors"])
    missing = web.client.get("/api/v1/jobs/999999", headers=web.as_role("viewer"))
    assert missing.status_code == 404 and problem_type(missing) == "not-found"
    for bad in ("abc", "0", "-1", "99999999999999999999999"):
        r = web.client.get(f"/api/v1/jobs/{bad}", headers=web.as_role("viewer"))
        assert r.status_code == 404, bad


# -- acting -------------------------------------------------------------------------------
def test_cancel_a_waiting_job_at_once_a_running_one_by_request_and_409_when_finished(
    web: Web,
) -> None:
    headers = web.as_role("operator")
    waiting = enqueue(web, {"task": "add", "args": [1], "options": {"delay": 60}}).json()
    r = web.client.post(f"/api/v1/jobs/{waiting['id']}/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    again = web.client.post(f"/api/v1/jobs/{waiting['id']}/cancel", headers=headers)
    assert again.status_code == 409 and problem_type(again) == "conflict"
    assert again.json()["state"] == "cancelled"
    running = enqueue(web, {"task": "add", "args": [1]}).json()
    web.app.backend.job_fetch(FetchParams("w", ["default"], 1, 30.0))
    r = web.client.post(f"/api/v1/jobs/{running['id']}/cancel?grace=2.5", headers=headers)
    # A running job is asked to stop: it stays running until it (or its worker) does.
    assert r.status_code == 200 and r.json()["state"] == "running"
    steps = web.client.get(f"/api/v1/jobs/{running['id']}/steps", headers=headers).json()
    assert steps["cancel_requested_at"] is not None and steps["steps"] == []
    signal = web.client.post(f"/api/v1/jobs/{running['id']}/signal", headers=headers,
                             json={"name": "approval", "payload": {"ok": True}})
    assert signal.status_code == 409 and "not waiting" in signal.json()["detail"]
    assert web.client.post("/api/v1/jobs/424242/cancel", headers=headers).status_code == 404


def test_retry_a_dead_job_and_it_succeeds_next_time(web: Web) -> None:
    headers = web.as_role("operator")
    job = enqueue(web, {"task": "add", "args": [1]}).json()
    drain(web.app, timeout=10)
    r = web.client.post(f"/api/v1/jobs/{job['id']}/retry", headers=headers)
    assert r.status_code == 409 and r.json()["state"] == "succeeded"
    dead = enqueue(web, {"task": "poison", "args": [1]}).json()
    drain(web.app, timeout=10)
    r = web.client.post(f"/api/v1/jobs/{dead['id']}/retry", headers=headers)
    assert r.status_code == 200 and r.json()["state"] == "available" and r.json()["attempt"] == 0


def test_dlq_groups_by_error_and_retries_or_purges_by_filter(web: Web) -> None:
    headers = web.as_role("operator")
    for n in range(4):
        enqueue(web, {"task": "poison", "args": [n]})
    for tag in ("a", "b"):
        enqueue(web, {"task": "flaky", "args": [tag]})
    drain(web.app, timeout=20)
    groups = web.client.get("/api/v1/dlq", headers=headers).json()
    assert groups["total"] == 6 and not groups["truncated"]
    sizes = [(g["count"], g["error_type"]) for g in groups["groups"]]
    assert sizes == [(4, "conveyor.errors.Discard"), (2, "builtins.ValueError")]
    poison_group = groups["groups"][0]

    refused = web.client.post("/api/v1/dlq/retry", headers=headers, json={})
    assert refused.status_code == 422
    r = web.client.post("/api/v1/dlq/retry", headers=headers,
                        json={"fingerprint": poison_group["fingerprint"]})
    assert r.json() == {"retried": 4}
    r = web.client.post("/api/v1/dlq/purge", headers=headers, json={"task": "flaky"})
    assert r.json() == {"purged": 2}
    assert web.client.get("/api/v1/dlq", headers=headers).json()["total"] == 0
    drain(web.app, timeout=20)
    r = web.client.post("/api/v1/dlq/purge", headers=headers, json={"all": True})
    assert r.json() == {"purged": 4}
    assert web.client.post("/api/v1/dlq/retry", headers=headers,
                           json={"fingerprint": "0" * 16}).json() == {"retried": 0}


def test_pause_and_resume_a_queue(web: Web) -> None:
    headers = web.as_role("operator")
    enqueue(web, {"task": "send_mail", "args": ["a", "b"]})
    r = web.client.post("/api/v1/queues/mail/pause", headers=headers)
    assert r.json() == {"queue": "mail", "paused": True, "changed": True}
    assert web.client.post("/api/v1/queues/mail/pause", headers=headers).json()["changed"] is False
    assert web.app.backend.job_fetch(FetchParams("w", ["mail"], 5, 30.0)) == []
    queues = {q["name"]: q for q in web.client.get("/api/v1/queues", headers=headers).json()[
        "queues"]}
    assert queues["mail"]["paused"] is True and queues["mail"]["counts"]["available"] == 1
    r = web.client.post("/api/v1/queues/mail/resume", headers=headers)
    assert r.json() == {"queue": "mail", "paused": False, "changed": True}
    assert len(web.app.backend.job_fetch(FetchParams("w", ["mail"], 5, 30.0))) == 1


def test_queue_stats_count_throughput_and_workers(web: Web) -> None:
    for i in range(3):
        enqueue(web, {"task": "add", "args": [i]})
    enqueue(web, {"task": "poison", "args": [0]})
    drain(web.app, timeout=10)
    queues = web.client.get("/api/v1/queues", headers=web.as_role("viewer")).json()["queues"]
    default = next(q for q in queues if q["name"] == "default")
    assert default["counts"]["succeeded"] == 3 and default["counts"]["dead"] == 1
    assert default["finished_last_hour"] == {"succeeded": 3, "dead": 1}


def test_workers_lists_those_alive_with_their_heartbeat(web: Web) -> None:
    worker = web.app.worker(burst=False, install_signals=False, concurrency=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        found: list[Any] = []
        while not found and datetime.now(UTC) < deadline:
            found = web.client.get("/api/v1/workers", headers=web.as_role("viewer")).json()[
                "workers"]
        assert found and found[0]["id"] == worker.id
        assert found[0]["seconds_since_heartbeat"] >= 0
    finally:
        worker.stop()
        thread.join(30)


def test_tokens_can_be_created_listed_and_revoked_by_an_admin(web: Web) -> None:
    admin = web.as_role("admin")
    r = web.client.post("/api/v1/tokens", headers=admin,
                        json={"name": "svc", "role": "enqueuer", "tasks": ["add"]})
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    listed = web.client.get("/api/v1/tokens", headers=admin).json()["tokens"]
    assert "token" not in listed[-1] and listed[-1]["id"] == created["id"]
    assert token not in web.client.get("/api/v1/tokens", headers=admin).text

    mine = {"Authorization": f"Bearer {token}"}
    assert enqueue(web, {"task": "add", "args": [1]}, role=None, **mine).status_code == 201
    refused = enqueue(web, {"task": "send_mail", "args": ["a", "b"]}, role=None, **mine)
    assert refused.status_code == 403 and "only enqueue the tasks add" in refused.json()["detail"]

    assert web.client.delete(f"/api/v1/tokens/{created['id']}", headers=admin).status_code == 204
    assert enqueue(web, {"task": "add", "args": [1]}, role=None, **mine).status_code == 401
    assert web.client.delete(f"/api/v1/tokens/{created['id']}", headers=admin).status_code == 404
    bad = web.client.post("/api/v1/tokens", headers=admin,
                          json={"name": "x", "role": "viewer", "queues": ["q"]})
    assert bad.status_code == 422 and problem_type(bad) == "invalid-option"


def test_an_enqueuer_limited_to_queues_cannot_enqueue_elsewhere(web: Web) -> None:
    from conveyor.web import create_token

    token, _ = create_token(web.app.backend, name="q", role="enqueuer", queues=["mail"])
    mine = {"Authorization": f"Bearer {token}"}
    ok = enqueue(web, {"task": "send_mail", "args": ["a", "b"]}, role=None, **mine)
    assert ok.status_code == 201
    moved = enqueue(web, {"task": "send_mail", "args": ["a", "b"],
                          "options": {"queue": "default"}}, role=None, **mine)
    assert moved.status_code == 403
    default = enqueue(web, {"task": "add", "args": [1]}, role=None, **mine)
    assert default.status_code == 403


def test_rate_limit_answers_429_with_retry_after_per_token(web_factory: Any) -> None:
    web = web_factory(rate_limit=0.5, rate_burst=3)
    viewer, admin = web.as_role("viewer"), web.as_role("admin")
    codes = [web.client.get("/api/v1/queues", headers=viewer).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = web.client.get("/api/v1/queues", headers=viewer)
    assert r.status_code == 429 and problem_type(r) == "rate-limited"
    assert int(r.headers["retry-after"]) >= 1
    # Another token has its own budget.
    assert web.client.get("/api/v1/queues", headers=admin).status_code == 200


def test_unauthenticated_and_bad_tokens_get_401_with_a_challenge(web: Web) -> None:
    for headers in ({}, {"Authorization": "Bearer cvy_" + "x" * 43},
                    {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer"}):
        r = web.client.get("/api/v1/jobs", headers=headers)
        assert r.status_code == 401 and problem_type(r) == "unauthorized", headers
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_health_is_public_and_checks_the_database(web: Web) -> None:
    r = web.client.get("/api/v1/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_security_headers_on_api_and_pages(web: Web) -> None:
    for path in ("/api/v1/health", "/login", "/api/v1/nope"):
        r = web.client.get(path)
        # Script only from our own files (the dashboard's live.js): never inline, never eval.
        assert "script-src 'self';" in r.headers["content-security-policy"]
        assert "unsafe" not in r.headers["content-security-policy"]
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"


def test_unknown_routes_and_methods_are_problems(web: Web) -> None:
    r = web.client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and problem_type(r) == "not-found"
    r = web.client.put("/api/v1/jobs", headers=web.as_role("admin"))
    assert r.status_code == 405 and problem_type(r) == "method-not-allowed"


def test_history_is_read_from_the_database_so_a_new_web_process_sees_it(web: Web) -> None:
    from starlette.testclient import TestClient

    from conveyor.web import create_app

    job = enqueue(web, {"task": "poison", "args": [3]}).json()
    drain(web.app, timeout=10)
    fresh = TestClient(create_app(web.app, auth=True), base_url="http://127.0.0.1")
    r = fresh.get(f"/api/v1/jobs/{job['id']}", headers=web.as_role("viewer"))
    assert r.json()["state"] == JobState.DEAD and r.json()["errors"]
    fresh.close()


def test_without_authentication_only_loopback_hosts_are_answered(web_factory: Any) -> None:
    from starlette.testclient import TestClient

    web = web_factory(auth=False)
    assert web.client.get("/api/v1/queues").status_code == 200
    for base in ("http://localhost:8000", "http://[::1]:8000", "http://127.0.0.1:9"):
        other = TestClient(web.client.app, base_url=base)
        assert other.get("/api/v1/queues").status_code == 200, base
    rebinding = TestClient(web.client.app, base_url="http://attacker.example")
    r = rebinding.get("/api/v1/queues")
    assert r.status_code == 400 and problem_type(r) == "host-not-allowed"


def test_a_database_that_is_down_gives_503_with_retry_after_never_a_trace() -> None:
    from starlette.testclient import TestClient

    from conveyor import Conveyor
    from conveyor.web import create_app

    # Nothing listens on port 1: every connection attempt is refused.
    app = Conveyor("postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout=0.2)
    try:
        for auth in (False, True):
            client = TestClient(create_app(app, auth=auth), base_url="http://127.0.0.1")
            headers = {"Authorization": "Bearer cvy_" + "a" * 43} if auth else {}
            r = client.get("/api/v1/jobs", headers=headers)
            assert r.status_code == 503 and problem_type(r) == "backend-unavailable", r.text
            assert int(r.headers["retry-after"]) >= 1
            assert client.get("/api/v1/health").status_code == 503
            if auth:  # the dashboard looks the session's token up in the database
                client.cookies.set("conveyor_session", "a" * 43)
            page = client.get("/")
            assert page.status_code == 503 and "did not answer" in page.text
            assert "Traceback" not in page.text and "127.0.0.1:1" not in page.text
            login = client.get("/login")
            signed = client.post("/login", data={
                "csrf": login.text.split('name="csrf" value="')[1].split('"')[0],
                "token": "cvy_" + "b" * 43,
            })
            assert signed.status_code == 503
            if auth:  # signing out must end the session in the database: it says it did not
                out = client.post("/logout", data={
                    "csrf": login.text.split('name="csrf" value="')[1].split('"')[0]})
                assert out.status_code == 503 and "did not answer" in out.text
    finally:
        app.close()


def test_slos_show_each_objectives_error_budget(web: Web) -> None:
    web.app.slo("poison-jobs", task="poison", success=0.99)
    web.app.slo("everything", success=0.5)
    for n in range(2):
        enqueue(web, {"task": "poison", "args": [n]})
    for n in range(6):
        enqueue(web, {"task": "add", "args": [n]})
    drain(web.app, timeout=20)
    r = web.client.get("/api/v1/slos", headers=web.as_role("viewer"))
    assert r.status_code == 200, r.text
    rows = {(s["objective"], s["sli"]): s for s in r.json()["slos"]}
    poison = rows[("poison-jobs", "success")]
    assert (poison["good"], poison["total"]) == (0, 2) and poison["budget_left"] < 0
    everything = rows[("everything", "success")]
    assert (everything["good"], everything["total"]) == (6, 8)
    assert everything["budget_left"] == pytest.approx(1 - (2 / 8) / 0.5)
    page = sign_in_page(web)
    assert 'data-slo="poison-jobs:success"' in page and 'data-slo="everything:success"' in page


def sign_in_page(web: Web) -> str:
    import re

    login = web.client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf
    r = web.client.post("/login", data={"csrf": csrf.group(1), "token": web.tokens["viewer"],
                                        "next": "/"})
    assert r.status_code == 200
    return r.text
