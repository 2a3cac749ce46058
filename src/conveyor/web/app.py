"""`create_app`: the ASGI application (API under /api/v1, dashboard under /).

Mount it in another Starlette or FastAPI app (`Mount("/conveyor", create_app(app))`)
or run it with `conveyor web myapp.tasks:app`.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.web.api import ENDPOINTS
from conveyor.web.auth import ANONYMOUS, Permission, Principal, RateLimiter, TokenCheck
from conveyor.web.problems import Problem
from conveyor.web.routing import (
    API_PREFIX,
    Call,
    Endpoint,
    Reply,
    bearer_token,
    openapi_document,
    problem_response,
    serve,
)

log = logging.getLogger("conveyor.web")

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
PUBLIC = Principal(name="anyone", role="viewer")
PROBE_FACTOR = 10
"""Health probes are limited per address at this many times the API's rate and burst."""
"""Who calls a public endpoint (health, openapi.json) when authentication is on."""

SECURITY_HEADERS = {
    # No script runs on the dashboard at all; styles come from our own file only.
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on our own
    # form posts, and the Origin check is part of the anti-forgery defence.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}


def _package_version() -> str:
    try:
        return version("conveyor")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class WebSettings:
    auth: bool = True
    """Require an API token (header for the API, login for the dashboard). When off,
    every caller is an admin: only for a server reachable from this host alone."""
    max_body_bytes: int = 1_048_576
    rate_limit: float = 20.0
    """Requests a second per token (on average)."""
    rate_burst: int = 100
    """Requests a token may make at once before the limit applies."""
    allowed_hosts: Sequence[str] = ()
    """Host names accepted in the Host header when authentication is off, besides
    the loopback names (a guard against DNS rebinding)."""


class WebState:
    """What every request needs: the conveyor app, the settings, token checks."""

    def __init__(self, conveyor: Conveyor, settings: WebSettings) -> None:
        self.conveyor = conveyor
        self.settings = settings
        self.tokens = TokenCheck(conveyor.backend)
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        # Health probes (load balancers, Kubernetes) come often and from few addresses,
        # often the same address as real clients behind a proxy: they get their own
        # bucket, PROBE_FACTOR times as generous, so they neither eat the API's budget
        # nor get throttled by it, yet cannot hammer the database without bound.
        self.probe_limiter = RateLimiter(
            settings.rate_limit * PROBE_FACTOR, settings.rate_burst * PROBE_FACTOR
        )

    def host_allowed(self, host_header: str) -> bool:
        if self.settings.auth:
            return True
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        if host.startswith("[") and "]" in host:
            host = host[: host.index("]") + 1]
        return host in LOOPBACK_NAMES or is_loopback(host) or host in self.settings.allowed_hosts

    def client_key(self, request: Request) -> str:
        return "ip:" + (request.client.host if request.client else "?")

    def limit(self, key: str, *, probe: bool = False) -> None:
        limiter = self.probe_limiter if probe else self.limiter
        wait = limiter.take(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            who = "this address may probe health" if probe else "this token may make"
            raise Problem(
                "rate-limited", f"slow down: {who} {limiter.rate:g} requests a second "
                f"(bursts of {limiter.burst}); retry in {seconds}s",
                headers={"Retry-After": str(seconds)},
            )

    async def principal_for_token(self, token: str | None) -> Principal | None:
        if not token:
            return None
        return await run_in_threadpool(self.tokens.principal, token)

    async def principal_for_session(self, session_id: str | None) -> Principal | None:
        """The dashboard's check: a live server-side session (never an API token)."""
        if not session_id:
            return None
        return await run_in_threadpool(self.tokens.session, session_id)

    async def authenticate(
        self, request: Request, permission: Permission | None, *, probe: bool = False
    ) -> Principal:
        """The API's check: bearer token, rate limit, then permission."""
        if not self.settings.auth:
            return ANONYMOUS
        if permission is None:
            self.limit(self.client_key(request), probe=probe)
            return PUBLIC
        token = bearer_token(request.headers)
        principal, refused = (
            (None, "") if token is None else await run_in_threadpool(self.tokens.check, token)
        )
        self.limit(
            f"token:{principal.token_id}" if principal is not None else self.client_key(request)
        )
        if principal is None:
            raise Problem(
                "unauthorized",
                "send a valid token as Authorization: Bearer <token> (create one with "
                "`conveyor tokens create --role viewer`)" if token is None else refused,
                headers={"WWW-Authenticate": 'Bearer realm="conveyor"'},
            )
        if not principal.may(permission):
            raise Problem(
                "forbidden", f"a {principal.role} token may not do this (needs the "
                f"{permission.value} permission)",
            )
        return principal


class SecurityMiddleware:
    """Security headers on every answer, and the Host check when authentication is off."""

    def __init__(self, app: ASGIApp, state: WebState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.state.host_allowed(host):
            response = problem_response(Problem(
                "host-not-allowed",
                f"Host {host!r} is refused: with authentication off only loopback names are "
                "served (start with authentication, or add the name to allowed_hosts)",
            ))
            await self._send_with_headers(response, scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        raw.append((name.encode(), value.encode()))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_secured)

    async def _send_with_headers(
        self, response: Response, scope: Scope, receive: Receive, send: Send
    ) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        await response(scope, receive, send)


def _openapi_endpoint(endpoints: list[Endpoint]) -> Endpoint:
    def openapi(call: Call) -> Reply:
        document = openapi_document(all_endpoints, _package_version())
        document["servers"] = [{"url": call.root_path or "/"}]
        return Reply(200, document)

    schema: dict[str, Any] = {"type": "object", "required": ["openapi", "paths"]}
    this = Endpoint("GET", "/openapi.json", "openapi", "This document", None, openapi,
                    {200: ("The OpenAPI 3.1 document of this API.", schema)}, tag="meta")
    all_endpoints = [*endpoints, this]
    return this


def api_endpoints() -> list[Endpoint]:
    """Every API operation, the OpenAPI document's own included."""
    return [*ENDPOINTS, _openapi_endpoint(ENDPOINTS)]


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith(request.scope.get("root_path", "") + API_PREFIX):
        status = getattr(exc, "status_code", 404)
        slug = "method-not-allowed" if status == 405 else "not-found"
        return problem_response(Problem(slug, "no such operation: see /api/v1/openapi.json"),
                                request.url.path)
    from conveyor.web.dashboard import error_page

    return await error_page(request, getattr(exc, "status_code", 404))


def create_app(
    conveyor: Conveyor,
    *,
    auth: bool = True,
    max_body_bytes: int = 1_048_576,
    rate_limit: float = 20.0,
    rate_burst: int = 100,
    allowed_hosts: Sequence[str] = (),
) -> Starlette:
    """The API and dashboard of `conveyor` as one ASGI app.

    With `auth=False` every caller may do everything, so the app only answers
    requests whose Host is a loopback name (or in `allowed_hosts`): bind it to
    127.0.0.1. `conveyor web` refuses any other address without authentication.
    """
    if not isinstance(conveyor, Conveyor):
        raise ConfigurationError(f"create_app takes a conveyor.Conveyor, got {conveyor!r}")
    if max_body_bytes < 1024:
        raise ConfigurationError("max_body_bytes must be at least 1024")
    settings = WebSettings(
        auth=auth, max_body_bytes=max_body_bytes, rate_limit=rate_limit,
        rate_burst=rate_burst, allowed_hosts=tuple(allowed_hosts),
    )
    state = WebState(conveyor, settings)
    from conveyor.web.dashboard import STATIC_DIR, dashboard_routes

    routes: list[BaseRoute] = [
        Route(API_PREFIX + ep.path, serve(ep), methods=[ep.method], name=ep.operation_id)
        for ep in api_endpoints()
    ]
    routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))
    routes.extend(dashboard_routes())
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _not_found, 404: _not_found, 405: _not_found},
    )
    app.state.conveyor_web = state
    app.add_middleware(SecurityMiddleware, state=state)
    return app
