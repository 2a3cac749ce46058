"""A real Django project (tests/django_project) whose `django.tasks` run on conveyor.

Every step is a `manage.py` command in its own process, as in production:
Django's migrate, `conveyor migrate`, the app enqueuing (plain, priority and
queue, run_after, context, failure, async, inside committed and rolled-back
transactions), `conveyor worker --burst`, then reading the results back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor

PROJECT = Path(__file__).resolve().parents[1] / "django_project"
pytestmark = pytest.mark.slow


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def test_django_tasks_run_on_conveyor(backend_url: str) -> None:
    env = {**os.environ, "DJANGO_DATABASE_URL": backend_url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage(env, "migrate", "-v0")
    assert "up to date" in manage(env, "conveyor", "migrate").stdout
    ids: dict[str, Any] = json.loads(manage(env, "scenario", "enqueue").stdout)
    assert ids["add_status"] == "READY"
    assert ids["orders"] == 1  # the rolled-back order is gone...
    assert ids["refused"] == {
        "set_argument": "SerializationError",  # not JSON: refused before anything is stored
        "unknown_queue": "InvalidTaskError",
        "result_not_a_number": "TaskResultDoesNotExist",
        "result_never_enqueued": "TaskResultDoesNotExist",
    }

    app = Conveyor(backend_url)
    try:
        # ... and so is its job: it was written on Django's connection, in its transaction.
        assert app.backend.job_get(int(ids["rolled_back"])) is None
        assert app.backend.job_get(int(ids["committed"])) is not None
        urgent = app.backend.job_get(int(ids["urgent"]))
        assert urgent is not None and urgent.priority == 0 and urgent.queue == "mail"
        assert app.backend.job_get(int(ids["add"])).priority == 5  # type: ignore[union-attr]
    finally:
        app.close()

    manage(env, "conveyor", "worker", "--burst", "--concurrency", "2")
    keys = ["add", "urgent", "later", "context", "broken", "async", "committed", "rolled_back"]
    app = Conveyor(backend_url)
    try:  # eight enqueues, one rolled back; the refused ones stored nothing
        stored = sum(sum(s.counts.values()) for s in app.backend.queue_stats())
        assert stored == 7
    finally:
        app.close()
    read = json.loads(manage(env, "scenario", "read", *[str(ids[k]) for k in keys]).stdout)
    got = {k: read[str(ids[k])] for k in keys}

    assert got["add"]["status"] == "SUCCESSFUL" and got["add"]["value"] == 5
    assert got["add"]["attempts"] == 1 and got["add"]["task"] == "add"
    assert (got["urgent"]["queue"], got["urgent"]["priority"]) == ("mail", 100)
    assert got["later"]["status"] == "READY" and got["later"]["run_after"] == "set"
    assert got["context"]["value"] == {"id": str(ids["context"]), "attempt": 1, "label": "me"}
    assert got["broken"]["status"] == "FAILED"
    assert got["broken"]["errors"] == ["builtins.ValueError"]
    assert got["async"]["value"] == "HI"
    assert got["committed"]["value"] == f"receipt for {ids['order']}"
    assert got["committed"]["receipts"] == [ids["order"]]  # the task's ORM write landed
    assert got["rolled_back"] is None

    status = json.loads(manage(env, "conveyor", "status", "--json").stdout)
    counts = {row["queue"]: row["counts"] for row in status}
    assert counts["default"]["dead"] == 1 and counts["default"]["scheduled"] == 1
    assert counts["mail"]["succeeded"] == 2
