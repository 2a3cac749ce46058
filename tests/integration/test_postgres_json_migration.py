"""PostgreSQL schema 6: arguments and results move from jsonb to json with their rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.backends.base import SCHEMA_VERSION, Completion, FetchParams, JobInsert
from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"conveyor_json_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_migration_6_keeps_existing_rows_and_stores_new_ones_exactly(
    empty_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from conveyor.backends.postgres import backend as module

    real = list(module._MIGRATIONS)
    monkeypatch.setattr(module, "SCHEMA_VERSION", 4)
    monkeypatch.setattr(module, "_MIGRATIONS", [m for m in real if m.version <= 4])
    old: Any = module.PostgresBackend(empty_pg_url)
    old.migrate()
    old.close()
    with psycopg.connect(empty_pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conveyor_jobs (task, queue, args, state, priority, run_at, "
            "max_attempts, result, finished_at) VALUES ('t', 'q', '[[1e16, -0.0], {}]'::jsonb, "
            "'succeeded', 5, now(), 1, '{\"r\": 2.50}'::jsonb, now())"
        )
    monkeypatch.setattr(module, "SCHEMA_VERSION", SCHEMA_VERSION)
    monkeypatch.setattr(module, "_MIGRATIONS", real)
    backend: Any = module.PostgresBackend(empty_pg_url)
    try:
        assert [v for v, _ in backend.migrate()] == [m.version for m in real if m.version > 4]
        backend.schema_check()
        with psycopg.connect(empty_pg_url) as conn:
            types = dict(conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'conveyor_jobs' AND column_name IN ('args', 'result')"
            ).fetchall())
        assert types == {"args": "json", "result": "json"}
        migrated = backend.job_get(1)
        # What jsonb already normalised stays normalised; nothing is lost.
        assert migrated.args == [10000000000000000, 0] and migrated.result == {"r": 2.5}
        [created] = backend.job_insert_many([JobInsert("t", "q", "[[1e16, -0.0, 1e308], {}]",
                                                       5, 1)])
        [leased] = backend.job_fetch(FetchParams("w", ["q"], 1, 30))
        assert leased.args == [1e16, -0.0, 1e308]
        assert str(leased.args[1]) == "-0.0" and isinstance(leased.args[0], float)
        backend.job_complete_many([Completion(created.id, leased.lease_token, "succeeded",
                                              result_json="[1e16, -0.0]")])
        result = backend.job_get(created.id).result
        assert [repr(v) for v in result] == ["1e+16", "-0.0"]
        with psycopg.connect(empty_pg_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO conveyor_jobs (task, queue, args, state, priority, "
                         "run_at, max_attempts) VALUES ('t', 'q', '{}', 'available', 5, now(), 1)")
    finally:
        backend.close()
