"""Starlette (and FastAPI) integration: open and close the app with the web
server, reach it from handlers, and mount the dashboard under a path.

    from starlette.applications import Starlette
    from conveyor.contrib.starlette import conveyor_lifespan, mount_dashboard

    web = Starlette(lifespan=conveyor_lifespan(app))
    mount_dashboard(web, app, "/conveyor")          # API and dashboard, with tokens

`conveyor_lifespan` migrates (optional) at start-up, puts the `Conveyor` in the
lifespan state and closes its connections at shutdown; `get_conveyor(request)`
returns it inside a handler (a FastAPI dependency as it stands: see
`conveyor.contrib.fastapi`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError

STATE_KEY = "conveyor"
"""The lifespan-state key under which the app is found (`request.state.conveyor`)."""


def conveyor_lifespan(
    conveyor: Conveyor,
    *,
    migrate: bool = False,
    check: bool = True,
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A Starlette/FastAPI `lifespan=` that opens `conveyor` at start-up and closes it at exit.

    `migrate=True` brings the schema up to date first (do it once per deploy, e.g.
    in one release step, rather than in every replica). `check=True` fails the
    start-up when the database is unreachable or behind the code's schema, so a
    broken deploy does not start taking requests.
    """
    if not isinstance(conveyor, Conveyor):
        raise ConfigurationError(f"conveyor_lifespan takes a conveyor.Conveyor, got {conveyor!r}")

    @asynccontextmanager
    async def lifespan(_asgi_app: Any) -> AsyncIterator[dict[str, Any]]:
        if migrate:
            await asyncio.to_thread(conveyor.migrate)
        elif check:
            await asyncio.to_thread(conveyor.backend.schema_check)
        try:
            yield {STATE_KEY: conveyor}
        finally:
            await asyncio.to_thread(conveyor.close)

    return lifespan


def get_conveyor(request: HTTPConnection) -> Conveyor:
    """The app put in the lifespan state by `conveyor_lifespan` (usable as a dependency)."""
    found = getattr(request.state, STATE_KEY, None)
    if not isinstance(found, Conveyor):
        raise ConfigurationError(
            "no Conveyor in this request's state: build the web app with "
            "lifespan=conveyor_lifespan(app)"
        )
    return found


def mount_dashboard(
    web: Starlette,
    conveyor: Conveyor,
    path: str = "/conveyor",
    *,
    auth: bool = True,
    allowed_hosts: Sequence[str] = (),
    **settings: Any,
) -> None:
    """Mount conveyor's HTTP API (`{path}/api/v1`) and dashboard (`{path}/`) on `web`.

    Authentication is on by default: callers need a token (`conveyor tokens create`),
    sent as `Authorization: Bearer ...` or through the dashboard's sign-in page.
    `auth=False` answers loopback hosts only (see `conveyor.web.create_app`).
    """
    from conveyor.web import create_app

    if not path.startswith("/") or path == "/" or path.endswith("/"):
        raise ConfigurationError(
            f"mount path must look like /conveyor (leading slash, no trailing one), got {path!r}"
        )
    web.mount(
        path,
        create_app(conveyor, auth=auth, allowed_hosts=allowed_hosts, **settings),
        name="conveyor",
    )


__all__ = ["STATE_KEY", "conveyor_lifespan", "get_conveyor", "mount_dashboard"]
