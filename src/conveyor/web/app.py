"""`create_app`: the ASGI application (API under /api/v1, dashboard under /).

Mount it in another Starlette or FastAPI app (`Mount("/conveyor", create_app(app))`)
or run it with `conveyor web myapp.tasks:app`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.web.api import ENDPOINTS
from conveyor.web.incidents import INCIDENT_ENDPOINTS, incident_routes
from conveyor.web.problems import Problem
from conveyor.web.routing import (
    API_PREFIX,
    ApiEndpoint,
    ApiRequest,
    Reply,
    openapi_document,
    problem_response,
    serve,
)
from conveyor.web.state import WebSettings, WebState, is_loopback

log = logging.getLogger("conveyor.web")

SECURITY_HEADERS = {
    # Scripts and styles come from our own files only (static/live.js, static/style.css):
    # no inline script or style, nothing from another origin; the script may fetch only
    # from this origin (the page it keeps live).
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
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


def _openapi_endpoint(endpoints: list[ApiEndpoint]) -> ApiEndpoint:
    def openapi(call: ApiRequest) -> Reply:
        document = openapi_document(all_endpoints, _package_version(), call.state.conveyor)
        document["servers"] = [{"url": call.root_path or "/"}]
        return Reply(200, document)

    schema: dict[str, Any] = {"type": "object", "required": ["openapi", "paths"]}
    this = ApiEndpoint("GET", "/openapi.json", "openapi", "This document", None, openapi,
                    {200: ("The OpenAPI 3.1 document of this API.", schema)}, tag="meta")
    all_endpoints = [*endpoints, this]
    return this


def api_endpoints() -> list[ApiEndpoint]:
    """Every API operation, the OpenAPI document's own included."""
    endpoints = [*ENDPOINTS, *INCIDENT_ENDPOINTS]
    return [*endpoints, _openapi_endpoint(endpoints)]


def _allow(exc: Exception) -> dict[str, str]:
    """The Allow header of a 405 (RFC 9110), its methods in a stable order."""
    headers = getattr(exc, "headers", None) or {}
    methods = {m.strip().upper() for m in headers.get("Allow", "").split(",") if m.strip()}
    return {"Allow": ", ".join(sorted(methods))} if methods else {}


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    allow = _allow(exc) if status == 405 else {}
    if request.url.path.startswith(request.scope.get("root_path", "") + API_PREFIX):
        if status == 405:
            problem = Problem("method-not-allowed", f"{request.method} is not an operation "
                              f"here (allowed: {allow.get('Allow', 'none')}): see "
                              "/api/v1/openapi.json", headers=allow)
        else:
            problem = Problem("not-found", "no such operation: see /api/v1/openapi.json")
        return problem_response(problem, request.url.path)
    from conveyor.web.dashboard import error_page

    response = await error_page(request, status)
    response.headers.update(allow)
    return response


def _path_routes(endpoints: list[ApiEndpoint]) -> list[Route]:
    """One route per path serving each of its declared methods, so that any other
    method is a 405 whose Allow header lists all of them (also where a fixed path such
    as /jobs/bulk would otherwise fall through to /jobs/{job_id})."""
    by_path: dict[str, dict[str, ApiEndpoint]] = {}
    for ep in endpoints:
        by_path.setdefault(ep.path, {})[ep.method] = ep
    fixed = {API_PREFIX + path: sorted(methods) for path, methods in by_path.items()
             if "{" not in path}
    routes = []
    for path, by_method in by_path.items():
        served = {method: serve(ep) for method, ep in by_method.items()}
        if "GET" in served:
            served.setdefault("HEAD", served["GET"])

        async def route(
            request: Request, served: dict[str, Any] = served, own: str = API_PREFIX + path
        ) -> Response:
            here = request.url.path.removeprefix(request.scope.get("root_path", ""))
            if here != own and here in fixed:  # a fixed path's own route lacks this method
                allowed = fixed[here] + (["HEAD"] if "GET" in fixed[here] else [])
                raise HTTPException(405, headers={"Allow": ", ".join(allowed)})
            answer: Response = await served[request.method](request)
            return answer

        name = "|".join(ep.operation_id for ep in by_method.values())
        routes.append(Route(API_PREFIX + path, route, methods=list(by_method), name=name))
    return routes


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

    routes: list[BaseRoute] = [*_path_routes(api_endpoints())]
    routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))
    routes.extend(dashboard_routes())
    routes.extend(incident_routes())
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _not_found, 404: _not_found, 405: _not_found},
    )
    app.state.conveyor_web = state
    app.add_middleware(SecurityMiddleware, state=state)
    return app


__all__ = ["WebSettings", "api_endpoints", "create_app", "is_loopback"]
