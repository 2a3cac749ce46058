"""Poison rows: what no backend can store is refused at enqueue, alike on both, and a
row already stored that holds such a value (an old release, or raw SQL) never
breaks a read: the app, the CLI, the API and the dashboard show it degraded."""

from __future__ import annotations

import importlib
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conveyor import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.cli import cli
from conveyor.clock import LATEST
from conveyor.errors import InvalidOptionError, SerializationError
from conveyor.jsonvalue import MAX_DEPTH
from tests.web.conftest import Web

BAD_TEXTS = ["a\x00b", "\ud800", "x\udc80y"]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_enqueue_refuses_unstorable_text_times_and_depth_alike(app: Conveyor) -> None:
    @app.task()
    def echo(*args: Any, **kwargs: Any) -> None: ...

    for text in BAD_TEXTS:
        with pytest.raises(SerializationError, match="NUL character or a lone surrogate"):
            echo.enqueue(text)
        with pytest.raises(SerializationError):
            echo.enqueue(payload={"k": [text]})
        with pytest.raises(SerializationError):
            echo.enqueue(**{text: 1})
        for option in ("idempotency_key", "group", "queue"):
            with pytest.raises((SerializationError, InvalidOptionError)):
                echo.using(**{option: text}).enqueue()  # type: ignore[misc]
        with pytest.raises(SerializationError):
            echo.using(tags=["ok", text]).enqueue()
    with pytest.raises(SerializationError, match=f"deeper than {MAX_DEPTH}"):
        echo.enqueue(nested(10_000))  # no RecursionError
    with pytest.raises(SerializationError, match=f"deeper than {MAX_DEPTH}"):
        echo.enqueue(nested(MAX_DEPTH + 1))
    for delay in (1e12, 4e9, timedelta(days=365 * 101)):
        with pytest.raises(InvalidOptionError, match="100 years"):
            echo.using(delay=delay).enqueue()
    for run_at in (datetime(9999, 12, 31, 23, tzinfo=UTC),
                   datetime(9999, 12, 30, 12, tzinfo=UTC),
                   datetime(1, 1, 1, tzinfo=UTC)):
        with pytest.raises(InvalidOptionError, match="run_at"):
            echo.using(run_at=run_at).enqueue()
    assert app.backend.job_list(JobFilter()) == []  # nothing was written
    echo.enqueue(nested(MAX_DEPTH))  # each argument may nest MAX_DEPTH levels
    # Within the bounds, and text that is merely unusual, is fine.
    far = echo.using(delay=timedelta(days=365 * 99)).enqueue("\U0001f600", "\ufffd", "é")
    assert far.record.args == ["\U0001f600", "\ufffd", "é"]


def _poison(app: Conveyor, job_id: int) -> None:
    """Give a stored job a year-33715 run_at and a lone surrogate, by raw SQL."""
    url = app.backend.url
    args = '[["\\ud800", "ok"], {"k": "\\udc80"}]'
    result = '"r\\ud800"'
    if url.startswith("sqlite"):
        import sqlite3

        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            conn.execute(
                "UPDATE conveyor_jobs SET run_at = ?, created_at = ?, args = ?, result = ?, "
                "tags = ? WHERE id = ?",
                (1e12, -1e12, args, result, '["t\\ud800"]', job_id),
            )
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE conveyor_jobs SET run_at = to_timestamp(1e12), "
                "created_at = '4000-01-01 BC', args = %s::json, result = %s::json "
                "WHERE id = %s",
                (args, result, job_id),
            )


@pytest.fixture
def poisoned(web: Web) -> Iterator[tuple[Web, int]]:
    job = web.app.get_task("flexible").using(delay=60).enqueue("fine")
    _poison(web.app, job.id)
    yield web, job.id


def test_a_stored_poison_row_reads_degraded_everywhere(poisoned: tuple[Web, int]) -> None:
    web, job_id = poisoned
    app = web.app
    record = app.backend.job_get(job_id)
    assert record is not None
    assert record.run_at == LATEST and record.created_at.year <= 1
    assert record.args == ["\ufffd", "ok"] and record.kwargs == {"k": "\ufffd"}
    assert record.result == "r\ufffd"
    job = app.get_job(job_id)
    assert job is not None and job.record.args[0] == "\ufffd"
    assert [r.id for r in app.backend.job_list(JobFilter())] == [job_id]
    # The API: JSON answers, never a 500 or a 503 that reads as an outage.
    viewer = web.as_role("viewer")
    one = web.client.get(f"/api/v1/jobs/{job_id}", headers=viewer)
    assert one.status_code == 200, one.text
    assert one.json()["args"] == ["\ufffd", "ok"]
    listed = web.client.get("/api/v1/jobs", headers=viewer)
    assert listed.status_code == 200, listed.text
    assert [j["id"] for j in listed.json()["jobs"]] == [job_id]
    # The dashboard.
    page = web.client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    web.client.post("/login", data={"csrf": csrf.group(1), "token": web.tokens["viewer"],
                                    "next": "/jobs"}, follow_redirects=False)
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/jobs?state=scheduled"):
        r = web.client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
    detail = web.client.get(f"/jobs/{job_id}").text
    assert "\ufffd" in detail or "\\ufffd" in detail
    assert "9999-12-30" in detail  # the out-of-range run_at, shown at the end of the range


@pytest.fixture
def cli_module(backend_url: str, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Conveyor]]:
    name = f"poisonapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from typing import Any\nfrom conveyor import Conveyor\n"
        f"app = Conveyor({backend_url!r})\n"
        "@app.task()\ndef flexible(*args: Any, **kwargs: Any) -> None: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    module = importlib.import_module(name)
    yield f"{name}:app", module.app
    module.app.close()
    sys.modules.pop(name, None)


def test_the_cli_lists_and_shows_a_poison_row(cli_module: tuple[str, Conveyor]) -> None:
    path, app = cli_module
    job = app.get_task("flexible").using(delay=60).enqueue("fine")
    _poison(app, job.id)
    runner = CliRunner()
    for args in (["jobs", "list", "-A", path], ["jobs", "list", "-A", path, "--json"],
                 ["jobs", "show", str(job.id), path], ["jobs", "show", str(job.id), path,
                                                       "--json"]):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        assert str(job.id) in result.output


def test_the_api_refuses_poison_with_a_problem_and_stores_nothing(web: Web) -> None:
    headers = {**web.as_role("operator"), "content-type": "application/json"}
    bodies = [
        '{"task": "flexible", "args": ["\\ud800"]}',
        '{"task": "flexible", "kwargs": {"k": "a\\u0000b"}}',
        '{"task": "flexible", "options": {"idempotency_key": "\\udc80"}}',
        '{"task": "flexible", "options": {"delay": 1e12}}',
        '{"task": "flexible", "options": {"run_at": "9999-12-31T23:00:00+00:00"}}',
        '{"task": "flexible", "args": ' + "[" * 10_000 + "]" * 10_000 + "}",
    ]
    for body in bodies:
        r = web.client.post("/api/v1/jobs", content=body.encode(), headers=headers)
        assert 400 <= r.status_code < 500, (body[:80], r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json"), r.text[:300]
    assert web.app.backend.job_list(JobFilter()) == []


def test_sqlite_text_that_is_not_utf8_reads_with_replacement_characters(tmp_path: Path) -> None:
    """Another program may write bytes that are not UTF-8 into a text column."""
    import sqlite3

    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        @app.task()
        def noop() -> None: ...

        job = noop.enqueue()
        with sqlite3.connect(tmp_path / "jobs.db") as conn:
            conn.execute("UPDATE conveyor_jobs SET queue = CAST(x'71ff' AS TEXT), "
                          "group_key = CAST(x'c3' AS TEXT) WHERE id = ?", (job.id,))
        record = app.backend.job_get(job.id)
        assert record is not None and (record.queue, record.group_key) == ("q\ufffd", "\ufffd")
        assert [r.queue for r in app.backend.job_list(JobFilter())] == ["q\ufffd"]
        assert [s.queue for s in app.backend.queue_stats()] == ["q\ufffd"]
    finally:
        app.close()
