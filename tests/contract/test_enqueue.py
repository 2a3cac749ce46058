"""Contract: enqueue. Every test runs on every backend (see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import (
    Conveyor,
    InvalidArgumentsError,
    InvalidOptionError,
    JobState,
    SerializationError,
)
from conveyor.backends.base import JobFilter


def all_jobs(app: Conveyor) -> list[Any]:
    return app.backend.job_list(JobFilter(limit=10_000))


def test_enqueue_stores_an_available_job_with_task_and_app_defaults(app: Conveyor) -> None:
    @app.task(queue="mail", priority=3, max_attempts=7, timeout=12.5)
    def send_email(to: str, subject: str) -> str:
        return to

    job = send_email.enqueue("a@example.com", subject="hi")
    record = job.refresh().record
    assert job.state is JobState.AVAILABLE
    assert (record.task, record.queue, record.priority, record.max_attempts) == (
        "send_email", "mail", 3, 7)
    assert record.args == ["a@example.com"] and record.kwargs == {"subject": "hi"}
    assert record.timeout == 12.5 and record.attempt == 0 and record.errors == []
    assert app.get_job(job.id) == job


def test_using_overrides_task_options_without_changing_the_task(app: Conveyor) -> None:
    @app.task(queue="default", priority=5)
    def work(n: int) -> int:
        return n

    urgent = work.using(queue="urgent", priority=0, max_attempts=2).enqueue(1)
    plain = work.enqueue(2)
    assert (urgent.record.queue, urgent.record.priority, urgent.record.max_attempts) == (
        "urgent", 0, 2)
    assert (plain.record.queue, plain.record.priority) == ("default", 5)


def test_delay_and_run_at_schedule_the_job(app: Conveyor) -> None:
    @app.task()
    def later() -> None: ...

    now = app.backend.now()
    delayed = later.using(delay=60).enqueue()
    at = later.using(run_at=datetime.now(UTC) + timedelta(hours=1)).enqueue()
    assert delayed.state is JobState.SCHEDULED and at.state is JobState.SCHEDULED
    assert abs(delayed.record.run_at.timestamp() - (now + 60)) < 2
    assert abs(at.record.run_at.timestamp() - (now + 3600)) < 2


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (({1, 2},), {}, SerializationError),
        ((b"bytes",), {}, SerializationError),
        ((float("nan"),), {}, SerializationError),
        (({1: "int key"},), {}, SerializationError),
        ((datetime.now(UTC),), {}, SerializationError),
        ((), {}, InvalidArgumentsError),
        ((1, 2), {}, InvalidArgumentsError),
        ((1,), {"nope": 1}, InvalidArgumentsError),
    ],
)
def test_bad_arguments_fail_at_enqueue_and_write_nothing(
    app: Conveyor, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    @app.task()
    def one(x: Any) -> None: ...

    with pytest.raises(error) as raised:
        one.enqueue(*args, **kwargs)
    assert "one" in str(raised.value)
    assert all_jobs(app) == []


def test_error_message_names_the_fix_for_non_json_arguments(app: Conveyor) -> None:
    @app.task()
    def tagged(tags: Any) -> None: ...

    with pytest.raises(SerializationError, match="is a set, which is not JSON: pass a list"):
        tagged.enqueue({"a"})


@pytest.mark.parametrize(
    "options",
    [
        {"delay": -1},
        {"priority": 10},
        {"priority": -1},
        {"priority": "high"},
        {"max_attempts": 0},
        {"queue": ""},
        {"timeout": 0},
        {"run_at": datetime(2030, 1, 1)},  # naive: ambiguous
        {"idempotency_key": ""},
        {"no_such_option": 1},
    ],
)
def test_bad_options_are_refused_with_a_conveyor_error(
    app: Conveyor, options: dict[str, Any]
) -> None:
    @app.task()
    def task() -> None: ...

    with pytest.raises(InvalidOptionError):
        task.using(**options).enqueue()
    assert all_jobs(app) == []


def test_enqueue_many_writes_all_in_one_go(app: Conveyor) -> None:
    @app.task()
    def add(a: int, b: int = 0) -> int:
        return a + b

    jobs = add.enqueue_many([(1, 2), {"a": 3}, add.call(4, b=5)])
    assert [j.record.args for j in jobs] == [[1, 2], [], [4]]
    assert len(all_jobs(app)) == 3


def test_enqueue_many_keeps_each_items_own_options(app: Conveyor) -> None:
    app.limit("tenants", key_concurrency=2)

    @app.task(limit="tenants")
    def add(a: int) -> int:
        return a

    jobs = add.enqueue_many([
        add.call(1),
        add.using(priority=7, limit_key="tenant:a").call(2),
        add.using(queue="other", limit="tenants", limit_key="tenant:b").call(3),
    ])
    records = [job.refresh().record for job in jobs]
    assert [(r.priority, r.queue, r.limit_key) for r in records] == [
        (5, "default", ""), (7, "default", "tenant:a"), (5, "other", "tenant:b")]
    # Over the batch's own options: what an item sets wins, the rest is the batch's.
    batch = add.using(priority=2, queue="low")
    jobs = batch.enqueue_many([add.call(4), add.using(queue="high").call(5)])
    assert [(j.refresh().record.priority, j.refresh().record.queue) for j in jobs] == [
        (2, "low"), (2, "high")]


def test_enqueue_many_is_all_or_nothing(app: Conveyor) -> None:
    @app.task()
    def add(a: int) -> int:
        return a

    with pytest.raises(SerializationError):
        add.enqueue_many([(1,), (2,), ({3},)])
    assert all_jobs(app) == []


def test_aenqueue_from_async_code(app: Conveyor) -> None:
    @app.task()
    async def fetch(url: str) -> int:
        return len(url)

    job = asyncio.run(fetch.aenqueue("https://example.com"))
    assert job.refresh().state is JobState.AVAILABLE


def test_same_idempotency_key_returns_the_same_unfinished_job(app: Conveyor) -> None:
    @app.task()
    def welcome(user: int) -> None: ...

    first = welcome.using(idempotency_key="welcome:42").enqueue(42)
    second = welcome.using(idempotency_key="welcome:42").enqueue(42)
    assert first.created and not second.created
    assert second.id == first.id
    assert len(all_jobs(app)) == 1


def test_idempotency_key_is_scoped_to_the_task(app: Conveyor) -> None:
    @app.task()
    def a() -> None: ...

    @app.task()
    def b() -> None: ...

    assert a.using(idempotency_key="k").enqueue().id != b.using(idempotency_key="k").enqueue().id


def test_idempotency_key_holds_through_the_window_after_finishing(make_app: Any) -> None:
    app = make_app(idempotency_window=3600)

    @app.task()
    def once() -> int:
        return 1

    first = once.using(idempotency_key="k").enqueue()
    app.run_worker(burst=True, install_signals=False)
    assert first.refresh().state is JobState.SUCCEEDED
    again = once.using(idempotency_key="k").enqueue()
    assert again.id == first.id and not again.created


def test_idempotency_key_is_free_again_after_the_window(make_app: Any) -> None:
    app = make_app(idempotency_window=0)

    @app.task()
    def once() -> int:
        return 1

    first = once.using(idempotency_key="k").enqueue()
    app.run_worker(burst=True, install_signals=False)
    again = once.using(idempotency_key="k").enqueue()
    assert again.created and again.id != first.id


def _app_connection(backend_url: str) -> Any:
    if backend_url.startswith("sqlite"):
        return sqlite3.connect(backend_url.removeprefix("sqlite:///"))
    import psycopg

    return psycopg.connect(backend_url)


def test_transactional_enqueue_rolled_back_never_existed(app: Conveyor, backend_url: str) -> None:
    @app.task()
    def notify(order: int) -> None: ...

    app.migrate()
    conn = _app_connection(backend_url)
    try:
        job = notify.using(connection=conn).enqueue(7)
        conn.rollback()
    finally:
        conn.close()
    assert app.get_job(job.id) is None
    assert all_jobs(app) == []


def test_transactional_enqueue_committed_exists(app: Conveyor, backend_url: str) -> None:
    @app.task()
    def notify(order: int) -> None: ...

    app.migrate()
    conn = _app_connection(backend_url)
    try:
        job = notify.using(connection=conn).enqueue(7)
        assert app.get_job(job.id) is None  # not visible before the commit
        conn.commit()
    finally:
        conn.close()
    found = app.get_job(job.id)
    assert found is not None and found.record.args == [7]
