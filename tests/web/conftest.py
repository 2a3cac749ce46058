"""Fixtures for the HTTP API and dashboard: a real app on each backend, served in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor, Discard, Retry
from conveyor.web import create_app, create_token

FAST = Retry(base=0.01, factor=2, cap=0.05)


def register_tasks(app: Conveyor) -> None:
    """The tasks every web test can enqueue."""

    @app.task()
    def add(a: int, b: int = 1) -> int:
        return a + b

    @app.task(queue="mail")
    def send_mail(to: str, subject: str, *, urgent: bool = False) -> str:
        return f"sent {subject} to {to}"

    @app.task(max_attempts=1)
    def poison(n: int) -> None:
        raise Discard(f"cannot handle record {n}")

    @app.task(max_attempts=2, retry=FAST)
    def flaky(tag: str) -> None:
        raise ValueError(f"upstream said no to {tag!r}")

    @app.task()
    def flexible(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)


@dataclass
class Web:
    app: Conveyor
    client: TestClient
    tokens: dict[str, str]

    def as_role(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}


def make_tokens(app: Conveyor) -> dict[str, str]:
    return {
        role: create_token(app.backend, name=f"test-{role}", role=role)[0]
        for role in ("viewer", "enqueuer", "operator", "admin")
    }


@pytest.fixture
def web_factory(make_app: Callable[..., Conveyor]) -> Iterator[Callable[..., Web]]:
    clients: list[TestClient] = []

    def build(*, auth: bool = True, app_options: dict[str, Any] | None = None,
              **settings: Any) -> Web:
        app = make_app(**(app_options or {}))
        register_tasks(app)
        settings.setdefault("rate_limit", 10_000.0)
        settings.setdefault("rate_burst", 10_000)
        asgi = create_app(app, auth=auth, **settings)
        client = TestClient(asgi, base_url="http://127.0.0.1", raise_server_exceptions=True)
        clients.append(client)
        return Web(app, client, make_tokens(app) if auth else {})

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def web(web_factory: Callable[..., Web]) -> Web:
    return web_factory()
