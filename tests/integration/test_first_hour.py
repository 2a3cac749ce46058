"""What a new user meets in the first hour, as they would meet it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, SchemaError
from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def unmigrated_pg(pg_database: str) -> Iterator[str]:
    """An empty PostgreSQL database: what `conveyor migrate` was forgotten on."""
    import psycopg

    name = f"conveyor_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_enqueue_before_migrate_says_what_to_run_without_quoting_sql(unmigrated_pg: str) -> None:
    app = Conveyor(unmigrated_pg)

    @app.task()
    def hello(name: str) -> str:
        return name

    try:
        with pytest.raises(SchemaError) as caught:
            hello.enqueue("world")
    finally:
        app.close()
    message = str(caught.value)
    assert "run `conveyor migrate`" in message and "conveyor_jobs" in message
    assert "INSERT" not in message and "LINE" not in message and "\n" not in message


@pytest.mark.parametrize("url", [
    "sqlite:///{tmp}/jobs.db?synchronus=normal",
    "postgresql://postgres@127.0.0.1:5432/postgres?synchronus=normal",
])
def test_a_typo_in_a_url_option_is_refused_with_the_known_ones(url: str, tmp_path: object) -> None:
    app = Conveyor(url.format(tmp=tmp_path))
    try:
        with pytest.raises(Exception) as caught:
            app.backend.schema_check()
    finally:
        app.close()
    assert "synchronus" in str(caught.value)
    if url.startswith("sqlite"):
        assert "known are busy_timeout, synchronous" in str(caught.value)
