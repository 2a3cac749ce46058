"""Server-side dashboard sessions and API token expiry, on both backends."""

from __future__ import annotations

from typing import Any

from conveyor.web.auth import TokenCheck, start_session
from tests.web.conftest import Web
from tests.web.test_dashboard import csrf_of, sign_in


def _age(web: Web, table: str, seconds: int) -> None:
    """Move every row's expiry of `table` into the past (the database's time moves on)."""
    url = web.app.url
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(f"UPDATE {table} SET expires_at = expires_at - ?", (seconds,))
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"UPDATE {table} SET expires_at = expires_at "
                         "- make_interval(secs => %s)", (seconds,))


def _problem(r: Any) -> str:
    return str(r.json()["type"]).rsplit(":", 1)[-1]


def test_the_cookie_holds_a_session_id_never_the_token_and_is_no_bearer(web: Web) -> None:
    page = web.client.get("/login")
    r = web.client.post("/login", data={"csrf": csrf_of(page.text),
                                         "token": web.tokens["admin"]}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "conveyor_session=" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower() and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain http here; https sets Secure (see below)
    session = web.client.cookies["conveyor_session"]
    assert web.tokens["admin"] not in cookie and not session.startswith("cvy_")
    assert web.client.get("/", follow_redirects=False).status_code == 200
    # A copied cookie value is not a token: the API refuses it.
    r = web.client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {session}"})
    assert r.status_code == 401 and _problem(r) == "unauthorized"
    # Only the SHA-256 of the session id is stored.
    assert web.app.backend.session_token(session) is None


def test_over_https_the_cookie_is_secure(web: Web) -> None:
    from starlette.testclient import TestClient

    client = TestClient(web.client.app, base_url="https://127.0.0.1")
    page = client.get("/login")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "token": web.tokens["viewer"]},
                    follow_redirects=False)
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_an_expired_session_is_refused_though_the_browser_still_sends_it(web: Web) -> None:
    principal = TokenCheck(web.app.backend).principal(web.tokens["viewer"])
    assert principal is not None
    session = start_session(web.app.backend, principal, lifetime=600.0)
    web.client.cookies.set("conveyor_session", session)
    assert web.client.get("/", follow_redirects=False).status_code == 200
    _age(web, "conveyor_sessions", 601)
    r = web.client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_revoking_the_token_ends_its_sessions_at_once(web: Web) -> None:
    client = sign_in(web, "operator")
    assert client.get("/", follow_redirects=False).status_code == 200
    [stored] = [t for t in web.app.backend.token_list() if t.name == "test-operator"]
    r = web.client.delete(f"/api/v1/tokens/{stored.id}", headers=web.as_role("admin"))
    assert r.status_code == 204
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_a_token_with_an_expiry_stops_working_with_a_clear_401(web: Web) -> None:
    admin = web.as_role("admin")
    r = web.client.post("/api/v1/tokens", json={"name": "short", "role": "viewer",
                                                "expires_in": 60}, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["expires_at"] is not None and made["expired"] is False
    short = {"Authorization": f"Bearer {made['token']}"}
    assert web.client.get("/api/v1/jobs", headers=short).status_code == 200
    client = sign_in_with(web, made["token"])
    _age(web, "conveyor_api_tokens", 61)
    r = web.client.get("/api/v1/jobs", headers=short)
    assert r.status_code == 401 and _problem(r) == "unauthorized"
    assert "expired at" in r.json()["detail"] and "short" in r.json()["detail"]
    # Its dashboard sessions end with it.
    assert client.get("/", follow_redirects=False).status_code == 303
    listed = web.client.get("/api/v1/tokens", headers=admin).json()["tokens"]
    [row] = [t for t in listed if t["name"] == "short"]
    assert row["expired"] is True and row["expires_at"] < made["expires_at"]
    [never] = [t for t in listed if t["name"] == "test-viewer"]
    assert never["expires_at"] is None and never["expired"] is False
    for bad in (0, -5, 10**12, "30d"):
        r = web.client.post("/api/v1/tokens", json={"name": "x", "role": "viewer",
                                                    "expires_in": bad}, headers=admin)
        assert r.status_code == 422, bad


def sign_in_with(web: Web, token: str) -> Any:
    from starlette.testclient import TestClient

    client = TestClient(web.client.app, base_url="http://127.0.0.1")
    page = client.get("/login")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    return client
