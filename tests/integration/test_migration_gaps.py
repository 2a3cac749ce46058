"""Migration numbers are reserved per feature, so a lower number can land after a
higher one was applied: migrate applies every migration not yet recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.sql import Migration
from conveyor.errors import SchemaError
from tests.conftest import PG_ADMIN_URL

LATE, EARLY = 99, 98


def fake(version: int, *, postgres: bool) -> Migration:
    name = f"{version:04d}_gap_test.sql"
    sql = f"CREATE TABLE conveyor_gap_test_{version} (x integer);\n"
    if postgres:
        sql += f"INSERT INTO conveyor_schema (version, name) VALUES ({version}, '{name}');\n"
    return Migration(version, name, sql)


def test_sqlite_applies_a_lower_migration_that_arrived_after_a_higher_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from conveyor.backends.sqlite import backend as module

    real = list(module._MIGRATIONS)
    monkeypatch.setattr(module, "SCHEMA_VERSION", LATE)
    monkeypatch.setattr(module, "_MIGRATIONS", [*real, fake(LATE, postgres=False)])
    url = f"sqlite:///{tmp_path / 'gap.db'}"
    first = module.SQLiteBackend(url)
    assert [v for v, _ in first.migrate()] == [m.version for m in real] + [LATE]
    first.close()

    monkeypatch.setattr(module, "_MIGRATIONS",
                        [*real, fake(EARLY, postgres=False), fake(LATE, postgres=False)])
    second = module.SQLiteBackend(url)
    assert [v for v, _ in second.migrate()] == [EARLY]
    assert second.migrate() == []
    second.close()
    with sqlite3.connect(tmp_path / "gap.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"conveyor_gap_test_98", "conveyor_gap_test_99"} <= tables


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"conveyor_gap_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_postgres_applies_a_lower_migration_that_arrived_after_a_higher_one(
    empty_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.backends.postgres import backend as module

    real = list(module._MIGRATIONS)
    monkeypatch.setattr(module, "SCHEMA_VERSION", LATE)
    monkeypatch.setattr(module, "_MIGRATIONS", [*real, fake(LATE, postgres=True)])
    first: Any = module.PostgresBackend(empty_pg_url)
    first.migrate()
    first.schema_check()
    first.close()

    monkeypatch.setattr(module, "_MIGRATIONS",
                        [*real, fake(EARLY, postgres=True), fake(LATE, postgres=True)])
    second: Any = module.PostgresBackend(empty_pg_url)
    try:
        with pytest.raises(SchemaError, match=r"lacks migration\(s\) \[98\]"):
            second.schema_check()
        assert [v for v, _ in second.migrate(dry_run=True)] == [EARLY]
        assert [v for v, _ in second.migrate()] == [EARLY]
        second.schema_check()
        assert second.migrate() == []
    finally:
        second.close()
