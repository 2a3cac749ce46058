"""Shared fixtures: every contract test runs once per backend, on a real database.

PostgreSQL: `CONVEYOR_TEST_PG` (default postgresql://postgres@127.0.0.1:5432/postgres)
names a server on which one throw-away database is created per test session.
Where no server answers, PostgreSQL tests are skipped locally; under CI=true
they fail instead, so a missing database can never pass as green.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor

PG_ADMIN_URL = os.environ.get("CONVEYOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgres"]


def _pg_unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated; dropped at the end."""
    try:
        import psycopg
    except ImportError as exc:
        _pg_unavailable(f"psycopg is not installed ({exc})")
        raise
    name = f"conveyor_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _pg_unavailable(str(exc).strip())
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    url = f"{base}/{name}"
    app = Conveyor(url)
    app.migrate()
    app.close()
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_truncate(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE conveyor_jobs, conveyor_workers, conveyor_queue_pauses, conveyor_audit, "
            "conveyor_api_tokens, conveyor_sessions, conveyor_job_retries, conveyor_spool_hosts, "
            "conveyor_job_stats, conveyor_leaders, conveyor_alerts, "
            "conveyor_workflows, conveyor_workflow_nodes, conveyor_workflow_edges, "
            "conveyor_breakers, conveyor_retry_budget, conveyor_job_steps, conveyor_job_context, "
            "conveyor_limits, conveyor_limit_keys, conveyor_events, conveyor_incidents "
            "RESTART IDENTITY"
        )


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("pg_database")
    _pg_truncate(url)
    return url


@pytest.fixture
def make_app(backend_url: str) -> Iterator[Any]:
    """Build apps on the test's database (several share it, like several processes)."""
    apps: list[Conveyor] = []

    def build(**settings: Any) -> Conveyor:
        settings.setdefault("poll_interval", 0.05)
        settings.setdefault("lease", 5.0)
        app = Conveyor(backend_url, **settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Any) -> Conveyor:
    built: Conveyor = make_app()
    return built


def sigstop_outside_sqlite_write(proc: subprocess.Popen[Any], url: str) -> None:
    """SIGSTOP `proc`, again and again until it is not stopped inside a SQLite write:
    a stopped writer holds the write lock and blocks every other process (a known
    SQLite limitation tested on its own), which is not what the caller tests."""
    proc.send_signal(signal.SIGSTOP)
    if not url.startswith("sqlite"):
        return
    fd = os.open(url.removeprefix("sqlite:///") + "-conveyor.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for _ in range(50):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                proc.send_signal(signal.SIGCONT)
                time.sleep(0.02)
                proc.send_signal(signal.SIGSTOP)
                time.sleep(0.005)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        raise AssertionError("the stopped process kept holding the SQLite write lock")
    finally:
        os.close(fd)
