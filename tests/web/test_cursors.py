"""Forged page cursors: every malformed cursor is a 400 `invalid-cursor`, API and dashboard."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.web.routing import encode_cursor
from tests.web.conftest import Web
from tests.web.test_dashboard import sign_in


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


FORGED = [
    _b64("v1:²"),  # a digit to str.isdigit, not to int()
    _b64("v1:-1"), _b64("v1: 1"), _b64("v2:1"), _b64("v1:1\x00"),
    _b64("v1:" + "9" * 40),  # longer than the pattern allows
    "\x00", "v1:5", "zzzz", "é", "A" * 65, "A" * 10_000, "====",
]
BEYOND = [
    # The OpenAPI document's cursor pattern admits any run of digits that fits in 64
    # characters, so the server must accept them: a number past the biggest id reads
    # as "below the biggest id" (the first page), never as a database error.
    _b64("v1:9999999999999999999"), _b64("v1:9223372036854775808"), _b64("v1:0"),
]


def _problem(r: object) -> str:
    body = r.json()  # type: ignore[attr-defined]
    return str(body["type"]).rsplit(":", 1)[-1]


def test_forged_cursors_are_400_on_the_api_and_the_dashboard(web: Web) -> None:
    web.app.get_task("add").enqueue(1)
    headers = web.as_role("viewer")
    client = sign_in(web, "viewer")
    for cursor in FORGED:
        r = web.client.get("/api/v1/jobs", params={"cursor": cursor}, headers=headers)
        assert r.status_code == 400 and _problem(r) == "invalid-cursor", (cursor, r.text)
        page = client.get("/jobs", params={"cursor": cursor})
        assert page.status_code == 400 and "cursor" in page.text, cursor
    for valid in (encode_cursor(1), encode_cursor(2**63 - 1), *BEYOND):
        assert web.client.get("/api/v1/jobs", params={"cursor": valid},
                              headers=headers).status_code == 200
        assert client.get("/jobs", params={"cursor": valid}).status_code == 200


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=st.one_of(
    st.text(max_size=80),
    st.text(alphabet="v1:0123456789²³¹٣", max_size=30).map(_b64),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda n: _b64(f"v1:{n}")),
))
def test_any_string_is_a_page_or_an_invalid_cursor(web: Web, cursor: str) -> None:
    r = web.client.get("/api/v1/jobs", params={"cursor": cursor},
                       headers=web.as_role("viewer"))
    assert r.status_code in (200, 400), (cursor, r.status_code, r.text)
    if r.status_code == 400:
        assert _problem(r) == "invalid-cursor"
    if _signed_in.get("web") is not web:  # one sign-in per test, not per example
        _signed_in.update(web=web, browser=sign_in(web, "viewer"))
    browser = _signed_in["browser"]
    page = browser.get("/jobs", params={"cursor": cursor}, follow_redirects=False)
    assert page.status_code == r.status_code, (cursor, page.status_code)


_signed_in: dict[str, Any] = {}
