"""What every request of the web app shares: the app, the web settings, the token checks.

`WebState` is built once by `create_app` and reached by handlers through
`ApiRequest.state`; the request pipeline (`conveyor.web.routing`) depends on this
module, never on the application factory (`conveyor.web.app`).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request

from conveyor.app import Conveyor
from conveyor.web.auth import ANONYMOUS, Permission, Principal, RateLimiter, TokenCheck
from conveyor.web.problems import Problem

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
PUBLIC = Principal(name="anyone", role="viewer")
"""Who calls a public endpoint (health, openapi.json) when authentication is on."""
PROBE_FACTOR = 10
"""Health probes are limited per address at this many times the API's rate and burst."""


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


def bearer_token(headers: Headers) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            "unauthorized", "send the token as Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="conveyor"'},
        )
    return token.strip()


__all__ = [
    "LOOPBACK_NAMES", "PUBLIC", "WebSettings", "WebState", "bearer_token", "is_loopback",
]
