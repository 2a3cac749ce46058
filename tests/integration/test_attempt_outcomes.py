"""Outcomes that are hard to record: a return value that is not JSON, an exception
that cannot print itself or whose traceback cannot be formatted. Both pools."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor import Conveyor, JobState
from tests.integration.outcome_app import build

APP_PATH = "tests.integration.outcome_app:app"


@pytest.fixture(params=["thread", "process"])
def pool(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def outcome_app(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Conveyor]:
    monkeypatch.setenv("CONVEYOR_URL", backend_url)  # for the process pool's children
    app = build(backend_url)
    app.migrate()
    yield app
    app.close()


def drain(app: Conveyor, pool: str) -> None:
    worker = app.worker(burst=True, install_signals=False, pool=pool, concurrency=2,
                        app_path=APP_PATH if pool == "process" else None, grace=5)
    worker.run()


def test_a_return_value_that_is_not_json_fails_the_attempt_once_and_says_why(
    outcome_app: Conveyor, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    flat = outcome_app.tasks["returns_set"].enqueue()
    nested = outcome_app.tasks["returns_nested"].enqueue()
    drain(outcome_app, pool)
    for job, detail in ((flat, "returned a set, which is not JSON; return lists"),
                        (nested, "returned a dict, which is not JSON (return value['rows'][0] "
                                 "is a bytes)")):
        record = job.refresh().record
        # Not retried (max_attempts=3): the same code returns the same kind of value.
        assert record.state is JobState.DEAD and record.attempt == 1
        assert record.result is None
        [error] = record.errors
        assert error.type == "conveyor.errors.ResultNotSerializable"
        assert detail in error.message
        assert error.message.startswith(f"task {record.task} returned")
    if pool == "thread":  # a child logs to the worker's stderr instead
        assert "which is not JSON" in caplog.text


def test_an_exception_that_cannot_print_itself_is_recorded_with_its_real_type(
    outcome_app: Conveyor, pool: str
) -> None:
    job = outcome_app.tasks["raises_unprintable"].enqueue()
    drain(outcome_app, pool)
    record = job.refresh().record
    assert record.state is JobState.DEAD
    [error] = record.errors
    assert error.type == "tests.integration.outcome_app.Unprintable"
    assert error.message == "<unprintable Unprintable: __str__ raised TypeError>"
    assert "raise Unprintable()" in error.traceback


def test_an_exception_whose_traceback_cannot_be_formatted_is_recorded_with_a_placeholder(
    outcome_app: Conveyor, pool: str
) -> None:
    job = outcome_app.tasks["raises_unformattable"].enqueue()
    drain(outcome_app, pool)
    record = job.refresh().record
    assert record.state is JobState.DEAD
    [error] = record.errors
    assert error.type == "tests.integration.outcome_app.Unformattable"
    assert error.message == "formatting fails"
    assert error.traceback == (
        "<traceback of Unformattable unavailable: formatting it raised TypeError>"
    )
