"""The audit log: every operator and admin action, from the CLI, the HTTP API and the
dashboard, leaves exactly one entry saying who, what and from where, in the action's own
transaction, on both backends; only admins read it, and it survives a restart."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from conveyor import Conveyor, Discard, OperationError
from conveyor.backends.base import AuditEntry, AuditFilter, AuditRecord, JobFilter
from conveyor.cli import cli
from conveyor.operations import Operations
from conveyor.testing import drain
from conveyor.types import JobState
from conveyor.web import create_app, create_token

APP_SOURCE = """
from conveyor import Conveyor, Discard

app = Conveyor({url!r}, poll_interval=0.05, lease=5.0)


@app.task(max_attempts=1)
def poison(n: int) -> None:
    raise Discard("bad record")
"""


def define_tasks(app: Conveyor) -> Any:
    @app.task(max_attempts=1)
    def poison(n: int) -> None:
        raise Discard("bad record")

    return poison


def entries(app: Conveyor, **filters: Any) -> list[AuditEntry]:
    return app.operations.audit(AuditFilter(limit=1000, **filters))


def newest_id(app: Conveyor) -> int:
    found = entries(app)
    return found[0].id if found else 0


def new_entries(app: Conveyor, after: int) -> list[AuditEntry]:
    return [e for e in entries(app) if e.id > after]


def dead_jobs(app: Conveyor, poison: Any, n: int) -> list[int]:
    jobs = poison.enqueue_many([(i,) for i in range(n)])
    drain(app, timeout=20)
    return [j.id for j in jobs]


# -- the HTTP API -----------------------------------------------------------------------
@pytest.fixture
def api(make_app: Callable[..., Conveyor]) -> Iterator[tuple[Conveyor, TestClient, dict[str, str]]]:
    app = make_app()
    define_tasks(app)
    tokens = {role: create_token(app.backend, name=f"t-{role}", role=role)[0]
              for role in ("viewer", "operator", "admin")}
    client = TestClient(create_app(app, rate_limit=10_000.0, rate_burst=10_000),
                        base_url="http://127.0.0.1")
    yield app, client, {r: f"Bearer {t}" for r, t in tokens.items()}
    client.close()


def test_each_api_action_leaves_one_entry_with_the_token_and_the_address(
    api: tuple[Conveyor, TestClient, dict[str, str]],
) -> None:
    app, client, auth = api
    poison = app.get_task("poison")
    ids = dead_jobs(app, poison, 4)
    waiting = poison.using(delay=3600).enqueue(99)
    operator = {"Authorization": auth["operator"]}
    admin = {"Authorization": auth["admin"]}
    actions: list[tuple[str, str, dict[str, str], dict[str, Any] | None, str, str, int]] = [
        ("POST", f"/jobs/{waiting.id}/cancel", operator, None, "job.cancel",
         f"job:{waiting.id}", 1),
        ("POST", f"/jobs/{ids[0]}/retry", operator, None, "job.retry", f"job:{ids[0]}", 1),
        ("POST", "/dlq/retry", operator, {"ids": [ids[1]]}, "job.retry", f"job:{ids[1]}", 1),
        ("POST", "/dlq/purge", operator, {"ids": ids[2:]}, "job.purge", "jobs", 2),
        ("POST", "/queues/mail/pause", operator, None, "queue.pause", "queue:mail", 1),
        ("POST", "/queues/mail/pause", operator, None, "queue.pause", "queue:mail", 0),
        ("POST", "/queues/mail/resume", operator, None, "queue.resume", "queue:mail", 1),
        ("POST", "/tokens", admin, {"name": "ci", "role": "viewer"}, "token.create", "", 1),
    ]
    for method, path, headers, body, action, target, count in actions:
        before = newest_id(app)
        r = client.request(method, "/api/v1" + path, headers=headers, json=body)
        assert r.status_code in (200, 201), (path, r.text)
        [entry] = new_entries(app, before)
        role = "admin" if headers is admin else "operator"
        assert re.fullmatch(rf"token:t-{role}#\d+ \({role}\)", entry.actor), entry
        assert (entry.source, entry.action, entry.count) == ("testclient", action, count)
        if target:
            assert entry.target == target
        if path == "/tokens":
            assert entry.target == f"token:{r.json()['id']}"
            assert entry.params["role"] == "viewer" and "token" not in entry.params
            revoked_id = r.json()["id"]
    before = newest_id(app)
    assert client.delete(f"/api/v1/tokens/{revoked_id}", headers=admin).status_code == 204
    [entry] = new_entries(app, before)
    assert (entry.action, entry.target, entry.count) == ("token.revoke", f"token:{revoked_id}", 1)


def test_refused_and_malformed_actions_leave_no_entry(
    api: tuple[Conveyor, TestClient, dict[str, str]],
) -> None:
    app, client, auth = api
    before = newest_id(app)
    viewer = {"Authorization": auth["viewer"]}
    operator = {"Authorization": auth["operator"]}
    assert client.post("/api/v1/queues/mail/pause", headers=viewer).status_code == 403
    assert client.post("/api/v1/jobs/999/cancel", headers=operator).status_code == 404
    assert client.post("/api/v1/dlq/retry", headers=operator, json={}).status_code == 422
    assert client.post("/api/v1/tokens", headers=operator,
                       json={"name": "x", "role": "admin"}).status_code == 403
    assert new_entries(app, before) == []


def test_only_an_admin_reads_the_audit_log_page_by_page(
    api: tuple[Conveyor, TestClient, dict[str, str]],
) -> None:
    _, client, auth = api
    for queue in ("a", "b", "c"):
        client.post(f"/api/v1/queues/{queue}/pause", headers={"Authorization": auth["operator"]})
    for role in ("viewer", "operator"):
        r = client.get("/api/v1/audit", headers={"Authorization": auth[role]})
        assert r.status_code == 403, role
    admin = {"Authorization": auth["admin"]}
    r = client.get("/api/v1/audit?action=queue.pause&limit=2", headers=admin)
    assert r.status_code == 200
    page = r.json()
    assert [e["target"] for e in page["entries"]] == ["queue:c", "queue:b"]
    r = client.get(f"/api/v1/audit?action=queue.pause&limit=2&cursor={page['next_cursor']}",
                   headers=admin)
    assert [e["target"] for e in r.json()["entries"]] == ["queue:a"]
    assert r.json()["next_cursor"] is None
    r = client.get("/api/v1/audit?actor=t-operator", headers=admin)
    assert len(r.json()["entries"]) == 3
    assert client.get("/api/v1/audit?cursor=nope", headers=admin).status_code == 400
    spec = client.get("/api/v1/openapi.json").json()
    assert spec["paths"]["/api/v1/audit"]["get"]["x-conveyor-permission"] == "admin"


# -- the dashboard ------------------------------------------------------------------------
def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def signed_in(client: TestClient, token: str) -> str:
    page = client.get("/login")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    return csrf_of(client.get("/jobs").text)


def test_each_dashboard_action_leaves_one_entry_and_only_an_admin_sees_the_page(
    make_app: Callable[..., Conveyor],
) -> None:
    app = make_app()
    poison = define_tasks(app)
    ids = dead_jobs(app, poison, 2)
    waiting = poison.using(delay=3600).enqueue(99)
    operator = create_token(app.backend, name="ops", role="operator")[0]
    admin = create_token(app.backend, name="boss", role="admin")[0]
    client = TestClient(create_app(app, rate_limit=10_000.0, rate_burst=10_000),
                        base_url="http://127.0.0.1")
    csrf = signed_in(client, operator)
    assert client.get("/audit").status_code == 403
    fingerprint = re.search(r'data-fingerprint="([0-9a-f]{16})"', client.get("/dlq").text)
    assert fingerprint is not None, "the dead-letter page shows the group"
    actions = [
        (f"/jobs/{waiting.id}/cancel", {}, "job.cancel", 1),
        (f"/jobs/{ids[0]}/retry", {}, "job.retry", 1),
        ("/queues/mail/pause", {}, "queue.pause", 1),
        ("/queues/mail/resume", {}, "queue.resume", 1),
        ("/dlq/purge", {"fingerprint": fingerprint.group(1), "confirm": "yes"}, "job.purge", 1),
    ]
    for path, fields, action, count in actions:
        before = newest_id(app)
        r = client.post(path, data={"csrf": csrf, **fields}, follow_redirects=False)
        assert r.status_code == 303, (path, r.text)
        [entry] = new_entries(app, before)
        assert re.fullmatch(r"token:ops#\d+ \(operator\)", entry.actor)
        assert (entry.source, entry.action, entry.count) == ("testclient", action, count)
    signed_in(client, admin)
    page = client.get("/audit?action=queue.pause")
    assert page.status_code == 200 and "queue:mail" in page.text
    # The only script is the dashboard's own file, nothing inline.
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/live.js" defer>']
    assert "token:ops#" in page.text and "queue.resume" not in page.text
    client.close()


# -- the command line ------------------------------------------------------------------------
@pytest.fixture
def cli_app(backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import importlib
    import sys

    name = f"auditapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE.format(url=backend_url))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    module.app.migrate()
    module.path = f"{name}:app"
    yield module
    module.app.close()
    sys.modules.pop(name, None)


def test_each_cli_action_leaves_one_entry_naming_the_user_and_the_host(cli_app: Any) -> None:
    app: Conveyor = cli_app.app
    ids = dead_jobs(app, cli_app.poison, 3)
    waiting = cli_app.poison.using(delay=3600).enqueue(99)

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    commands: list[tuple[tuple[str, ...], str, str, int]] = [
        (("dlq", "retry", cli_app.path, str(ids[0])), "job.retry", f"job:{ids[0]}", 1),
        (("dlq", "purge", cli_app.path, "--yes"), "job.purge", "jobs", 2),
        (("jobs", "cancel", str(waiting.id), cli_app.path), "job.cancel",
         f"job:{waiting.id}", 1),
        (("queues", "pause", "mail", cli_app.path), "queue.pause", "queue:mail", 1),
        (("queues", "resume", "mail", cli_app.path), "queue.resume", "queue:mail", 1),
        (("tokens", "create", cli_app.path, "--name", "ci", "--role", "viewer", "--json"),
         "token.create", "token:1", 1),
        (("tokens", "revoke", "1", cli_app.path), "token.revoke", "token:1", 1),
    ]
    for args, action, target, count in commands:
        before = newest_id(app)
        run(*args)
        [entry] = new_entries(app, before)
        assert re.fullmatch(r"cli:[^@]+@.+", entry.actor), entry
        assert (entry.source, entry.action, entry.target, entry.count) == (
            "cli", action, target, count)
    shown = run("audit", cli_app.path, "--action", "queue.pause", "--since", "1h")
    assert "queue:mail" in shown and "queue.resume" not in shown
    assert "no audit entries" in run("audit", cli_app.path, "--actor", "nobody-such")


# -- the backend: one transaction, retention, restarts -------------------------------------------
def test_an_audit_entry_that_cannot_be_written_undoes_the_action(app: Conveyor) -> None:
    poison = define_tasks(app)
    [job_id] = dead_jobs(app, poison, 1)
    broken = AuditRecord(actor="someone", source="here", action="x" * 101)  # over the CHECK
    with pytest.raises(Exception):
        app.backend.job_retry(JobFilter(ids=[job_id], limit=1), audit=broken)
    with pytest.raises(Exception):
        app.backend.queue_pause("mail", audit=broken)
    record = app.get_job(job_id)
    assert record is not None and record.state is JobState.DEAD
    assert app.backend.queue_pause_list() == [] and entries(app) == []


def test_bad_input_is_refused_before_anything_changes(app: Conveyor) -> None:
    ops = app.operations
    for call in (
        lambda: ops.pause_queue("", actor="a", source="b"),
        lambda: ops.pause_queue("q", actor="", source="b"),
        lambda: ops.cancel(0, actor="a", source="b"),
        lambda: ops.create_token(name="x", role="root", actor="a", source="b"),
        lambda: ops.purge(JobFilter(states=[JobState.RUNNING]), actor="a", source="b"),
        lambda: ops.record("limit.set", "queue:q", actor="a\x00", source="b"),
    ):
        with pytest.raises(OperationError):
            call()
    assert entries(app) == [] and app.backend.queue_pause_list() == []


def test_entries_survive_a_restart_and_expire_after_the_retention(
    make_app: Callable[..., Conveyor],
) -> None:
    app = make_app()
    app.operations.pause_queue("mail", actor="cli:me@here", source="cli")
    app.operations.record("limit.set", "queue:mail", actor="cli:me@here", source="cli",
                          params={"rate": "10/s"})
    app.close()
    again = make_app()
    found = entries(again)
    assert [(e.action, e.actor, e.params) for e in found] == [
        ("limit.set", "cli:me@here", {"rate": "10/s"}),
        ("queue.pause", "cli:me@here", {}),
    ]
    time.sleep(0.05)
    short = Operations(again.backend, audit_retention=0.01)
    short.resume_queue("mail", actor="cli:me@here", source="cli")
    assert [e.action for e in entries(again)] == ["queue.resume"]
