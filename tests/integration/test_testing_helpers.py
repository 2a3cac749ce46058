"""conveyor.testing, used the way a user's test suite uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import ConfigurationError, Conveyor, JobState
from conveyor.testing import drain, enqueued, temporary_database


def make_users_app(path: Path) -> Conveyor:
    app = Conveyor(f"sqlite:///{path / 'production-like.db'}", poll_interval=0.05)

    @app.task()
    def send_welcome(email: str) -> str:
        return f"sent to {email}"

    @app.task()
    def audit(event: str) -> None: ...

    return app


def test_temporary_database_isolates_the_apps_own_tasks_and_restores_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "test").mkdir()
    app = make_users_app(tmp_path / "app")
    outside = app.enqueue("send_welcome", "before@example.com")

    with temporary_database(app, tmp_path / "test"):
        assert enqueued(app) == []  # the app's real database is out of sight
        app.enqueue("send_welcome", "a@example.com")
        app.enqueue("audit", "signup")
        (job,) = enqueued(app, app.tasks["send_welcome"])
        assert job.args == ["a@example.com"] and job.state is JobState.AVAILABLE
        drain(app)
        done = app.get_job(job.id)
        assert done is not None and done.wait(1) == "sent to a@example.com"
        assert [j.task for j in enqueued(app, states=[JobState.SUCCEEDED])] == [
            "send_welcome", "audit"
        ]

    records = enqueued(app)
    assert [(r.id, r.args) for r in records] == [(outside.id, ["before@example.com"])]
    assert records[0].state is JobState.AVAILABLE  # drain ran on the temporary file only
    app.close()


def test_temporary_database_wants_an_empty_folder(tmp_path: Path) -> None:
    app = make_users_app(tmp_path)
    with temporary_database(app, tmp_path):
        app.enqueue("audit", "x")
    with (
        pytest.raises(ConfigurationError, match="already exists: give temporary_database"),
        temporary_database(app, tmp_path),
    ):
        pass


def test_enqueued_pages_through_every_job_oldest_first(tmp_path: Path) -> None:
    app = make_users_app(tmp_path)
    with temporary_database(app, tmp_path):
        app.tasks["audit"].enqueue_many([(str(i),) for i in range(2_500)])
        jobs = enqueued(app, "audit")
        assert [j.args[0] for j in jobs] == [str(i) for i in range(2_500)]
        assert enqueued(app, "send_welcome") == []
