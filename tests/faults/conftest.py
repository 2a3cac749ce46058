"""Fixtures of the failure suite: a private PostgreSQL cluster, one database URL
per backend on it, and the history file each fault test writes.

Every test module here is marked `faults` (run them alone with `pytest -m faults`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.conftest import IN_CI
from tests.faults.pgcluster import PrivateCluster, find_pg_bin


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test session alone: tests may stop and restart it."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        reason = "no PostgreSQL server binaries (initdb) found; set CONVEYOR_TEST_PG_BIN"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    cluster = PrivateCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def private_pg_database(private_pg: PrivateCluster) -> str:
    """A migrated database on the private cluster, shared by the session's fault tests."""
    import psycopg

    with psycopg.connect(private_pg.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE conveyor_faults")
    url = private_pg.url.rsplit("/", 1)[0] + "/conveyor_faults"
    app = Conveyor(url)
    app.migrate()
    app.close()
    return url


@pytest.fixture
def private_pg_url(private_pg: PrivateCluster, private_pg_database: str) -> str:
    """The private database, emptied (and the server started, should a test have left it down)."""
    import psycopg

    if not private_pg.is_running():
        private_pg.start()
    private_pg.wait_ready()
    with psycopg.connect(private_pg_database, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE conveyor_jobs, conveyor_workers, conveyor_breakers, conveyor_retry_budget, "
            "conveyor_job_steps, conveyor_job_context, conveyor_limits, conveyor_limit_keys "
            "RESTART IDENTITY"
        )
    return private_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def fault_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(backend name, URL of an empty migrated database) for each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        app = Conveyor(url)
        app.migrate()
        app.close()
        return "sqlite", url
    return "postgres", str(request.getfixturevalue("private_pg_url"))


@pytest.fixture
def history(tmp_path: Path) -> Path:
    return tmp_path / "history.log"
