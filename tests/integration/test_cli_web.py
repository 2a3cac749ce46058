"""`conveyor web` and `conveyor tokens`, as a user runs them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration import test_cli
from tests.integration.test_cli import CliApp, invoke

cli_app = test_cli.cli_app  # the same fixture: an app module on disk with its SQLite file


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_web_refuses_a_public_address_without_authentication(cli_app: CliApp) -> None:
    for host in ("0.0.0.0", "192.0.2.10", "::"):
        result = invoke("web", cli_app.path, "--no-auth", "--host", host)
        assert result.exit_code == 1, result.output
        assert "refusing to listen" in result.stderr and "--no-auth" in result.stderr


def test_tokens_create_list_and_revoke(cli_app: CliApp) -> None:
    made = invoke("tokens", "create", cli_app.path, "--name", "billing", "--role", "enqueuer",
                  "--tasks", "add,boom", "--json")
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    assert created["token"].startswith("cvy_") and created["tasks"] == ["add", "boom"]
    stored = cli_app.app.backend.token_list()
    assert [t.name for t in stored] == ["billing"]
    assert created["token"] not in {t.token_hash for t in stored}  # only the hash is kept

    plain = invoke("tokens", "create", cli_app.path, "--name", "ops", "--role", "operator")
    assert plain.exit_code == 0 and plain.stdout.strip().startswith("cvy_")
    assert "not shown again" in plain.stderr

    listed = invoke("tokens", "list", cli_app.path)
    assert "billing" in listed.stdout and "task add" in listed.stdout
    assert created["token"] not in listed.stdout
    assert invoke("tokens", "revoke", cli_app.path, "1").exit_code == 0
    again = invoke("tokens", "revoke", cli_app.path, "1")
    assert again.exit_code == 1 and "no live token 1" in again.stderr
    rows = json.loads(invoke("tokens", "list", cli_app.path, "--json").stdout)
    assert rows[0]["revoked_at"] is not None and rows[1]["revoked_at"] is None

    wrong = invoke("tokens", "create", cli_app.path, "--name", "x", "--role", "viewer",
                   "--queues", "q")
    assert wrong.exit_code == 1 and "only an enqueuer token" in wrong.stderr


def test_web_serves_the_api_and_dashboard_on_loopback(cli_app: CliApp) -> None:
    cli_app.module.add.enqueue(1, 2)
    token = invoke("tokens", "create", cli_app.path, "--name", "me", "--role", "viewer").stdout
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "web", cli_app.path, "--port", str(port)],
        cwd=cli_app.folder, env=cli_app.env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/api/v1/health", timeout=2) as r:
                    assert json.load(r) == {"status": "ok"}
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "conveyor web did not start"
                time.sleep(0.1)
        request = urllib.request.Request(
            base + "/api/v1/jobs", headers={"Authorization": f"Bearer {token.strip()}"}
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            jobs = json.load(r)["jobs"]
        assert [j["task"] for j in jobs] == ["add"]
        try:
            urllib.request.urlopen(base + "/api/v1/jobs", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
            assert exc.headers["content-type"] == "application/problem+json"
        else:
            raise AssertionError("an unauthenticated request was answered")
    finally:
        proc.terminate()
        out, _err = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out


def test_the_demo_serves_the_dashboard_while_it_runs_and_still_ends_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("demo", "--db", "demo.db", "--jobs", "5")
    assert result.exit_code == 0, result.output
    assert "dashboard (while the demo runs): http://127.0.0.1:" in result.stdout
    assert "conveyor web --app conveyor.demo:app --no-auth" in result.stdout


def test_tokens_create_with_an_expiry_and_the_list_shows_it(cli_app: CliApp) -> None:
    made = invoke("tokens", "create", cli_app.path, "--name", "temp", "--role", "viewer",
                  "--expires-in", "30d", "--json")
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    assert created["expires_at"] is not None
    rows = json.loads(invoke("tokens", "list", cli_app.path, "--json").stdout)
    assert rows[0]["expires_at"] == created["expires_at"] and rows[0]["expired"] is False
    [stored] = cli_app.app.backend.token_list()
    assert stored.expires_at is not None
    assert 30 * 86400 - 120 < stored.expires_at - stored.created_at <= 30 * 86400 + 1
    assert "expires" in invoke("tokens", "list", cli_app.path).stdout
    for bad in ("30x", "-1d", "0", "forever"):
        wrong = invoke("tokens", "create", cli_app.path, "--name", "y", "--role", "viewer",
                       "--expires-in", bad)
        assert wrong.exit_code != 0 and "error" in wrong.output.lower() + wrong.stderr, bad


def test_tokens_revoke_takes_the_app_first_and_still_reads_the_old_order(
    cli_app: CliApp,
) -> None:
    for name in ("a", "b"):
        assert invoke("tokens", "create", cli_app.path, "--name", name, "--role", "viewer") \
            .exit_code == 0
    old = invoke("tokens", "revoke", "2", cli_app.path)
    assert old.exit_code == 0 and "deprecated" in old.stderr
    assert f"tokens revoke {cli_app.path} 2" in old.stderr
    bad = invoke("tokens", "revoke", cli_app.path, "x")
    assert bad.exit_code == 1 and "usage: conveyor tokens revoke [APP] TOKEN_ID" in bad.stderr
    revoked = {t.id for t in cli_app.app.backend.token_list() if t.revoked_at is not None}
    assert revoked == {2}

