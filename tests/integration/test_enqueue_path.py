"""One public enqueue path: tasks, cron, the HTTP API and transactional enqueue all pass
the enqueue middleware and emit `enqueued`, on both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from conveyor import (
    Conveyor,
    EnqueueJob,
    InvalidArgumentsError,
    InvalidOptionError,
    Job,
    Middleware,
)
from conveyor.backends.base import JobFilter
from conveyor.events import EventName, JobEvent
from conveyor.web import create_app


class Recorder(Middleware):
    """Records each batch it sees, then passes it on (optionally with a tag added)."""

    def __init__(self, name: str, log: list[tuple[str, list[str]]], tag: str | None = None):
        self.name, self.log, self.tag = name, log, tag

    def around_enqueue(
        self, jobs: list[EnqueueJob], call_next: Callable[[list[EnqueueJob]], list[Job[Any]]]
    ) -> list[Job[Any]]:
        self.log.append((self.name, [j.task for j in jobs]))
        if self.tag is not None:
            jobs = [replace(j, tags=(*j.tags, self.tag)) for j in jobs]
        return call_next(jobs)


class Refuse(Middleware):
    def around_enqueue(
        self, jobs: list[EnqueueJob], call_next: Callable[[list[EnqueueJob]], list[Job[Any]]]
    ) -> list[Job[Any]]:
        raise InvalidOptionError(f"tenant quota exceeded: {len(jobs)} job(s) refused")


def stored(app: Conveyor) -> list[Any]:
    return app.backend.job_list(JobFilter(limit=100))


def enqueued_events(app: Conveyor) -> list[JobEvent]:
    seen: list[JobEvent] = []
    app.events.subscribe(seen.append, wants=lambda name: name is EventName.ENQUEUED)
    return seen


def test_a_cron_job_passes_the_enqueue_middleware_and_emits_enqueued(
    make_app: Callable[..., Conveyor],
) -> None:
    log: list[tuple[str, list[str]]] = []
    app = make_app(middleware=[Recorder("tenant", log, tag="tenant:acme")])

    @app.cron("* * * * *")
    @app.task()
    def nightly() -> None: ...

    events = enqueued_events(app)
    assert app.cron_scheduler().run_due() == 1
    [job] = stored(app)
    assert log == [("tenant", ["nightly"])]
    assert [(e.name, e.job_id, e.task) for e in events] == [
        (EventName.ENQUEUED, job.id, "nightly")
    ]
    assert "tenant:acme" in job.tags and job.idempotency_key.startswith("cron:nightly:")


def test_the_first_middleware_is_outermost_and_a_bulk_enqueue_is_one_batch(
    make_app: Callable[..., Conveyor],
) -> None:
    log: list[tuple[str, list[str]]] = []
    app = make_app(middleware=[Recorder("outer", log)])
    app.add_middleware(Recorder("inner", log, tag="inner"))

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    jobs = add.enqueue_many([(1, 2), (3, 4), (5, 6)])
    assert log == [("outer", ["add"] * 3), ("inner", ["add"] * 3)]
    assert all(job.record.tags == ["inner"] for job in jobs)


def test_a_refusing_middleware_stores_nothing_from_python_cron_or_http(
    make_app: Callable[..., Conveyor],
) -> None:
    app = make_app(middleware=[Refuse()])

    @app.cron("* * * * *")
    @app.task()
    def report(n: int = 0) -> None: ...

    events = enqueued_events(app)
    with pytest.raises(InvalidOptionError, match="quota"):
        report.enqueue(1)
    with pytest.raises(InvalidOptionError, match="quota"):
        app.cron_scheduler().run_due()
    client = TestClient(create_app(app, auth=False), base_url="http://127.0.0.1")
    r = client.post("/api/v1/jobs", json={"task": "report", "args": [2]})
    assert r.status_code == 422 and "quota" in r.json()["detail"]
    r = client.post("/api/v1/jobs/bulk", json={"jobs": [{"task": "report"}] * 3})
    assert r.status_code == 422
    client.close()
    assert stored(app) == [] and events == []


def test_an_api_enqueue_passes_the_middleware_and_its_tag_is_stored(
    make_app: Callable[..., Conveyor],
) -> None:
    log: list[tuple[str, list[str]]] = []
    app = make_app(middleware=[Recorder("tenant", log, tag="tenant:acme")])

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    events = enqueued_events(app)
    client = TestClient(create_app(app, auth=False), base_url="http://127.0.0.1")
    one = client.post("/api/v1/jobs", json={"task": "add", "args": [1, 2],
                                            "options": {"tags": ["web"]}})
    bulk = client.post("/api/v1/jobs/bulk", json={"jobs": [{"task": "add", "args": [i, i]}
                                                          for i in range(4)]})
    client.close()
    assert one.status_code == 201 and one.json()["tags"] == ["web", "tenant:acme"]
    assert bulk.status_code == 201
    assert all(j["job"]["tags"] == ["tenant:acme"] for j in bulk.json()["jobs"])
    assert log == [("tenant", ["add"]), ("tenant", ["add"] * 4)]
    assert len(events) == 5 and all(job.tags[-1] == "tenant:acme" for job in stored(app))


def test_a_middleware_that_breaks_the_arguments_is_refused_before_storage(
    make_app: Callable[..., Conveyor],
) -> None:
    class Breaks(Middleware):
        def around_enqueue(self, jobs: list[EnqueueJob], call_next: Any) -> list[Job[Any]]:
            return call_next([replace(j, args=({1, 2},)) for j in jobs])  # a set: not JSON

    app = make_app(middleware=[Breaks()])

    @app.task()
    def take(x: Any) -> None: ...

    with pytest.raises(Exception, match="not JSON"):
        take.enqueue([1, 2])
    assert stored(app) == []


def test_a_transactional_enqueue_passes_the_middleware(
    make_app: Callable[..., Conveyor], backend_url: str
) -> None:
    log: list[tuple[str, list[str]]] = []
    app = make_app(middleware=[Recorder("tenant", log, tag="tenant:acme")])

    @app.task()
    def notify(order: int) -> None: ...

    app.migrate()
    if backend_url.startswith("sqlite"):
        conn: Any = sqlite3.connect(backend_url.removeprefix("sqlite:///"))
    else:
        import psycopg

        conn = psycopg.connect(backend_url)
    try:
        job = notify.using(connection=conn).enqueue(7)
        conn.commit()
    finally:
        conn.close()
    assert log == [("tenant", ["notify"])]
    assert job.refresh().record.tags == ["tenant:acme"]


def test_job_handles_outlive_closing_the_app_and_bad_items_are_refused(app: Conveyor) -> None:
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    job = add.enqueue(1, 2)
    app.close()  # the backend reopens on first use; the handle reads through the app
    assert job.refresh().record.args == [1, 2]
    with pytest.raises(InvalidOptionError, match=r"task\.prepare"):
        app.enqueue_jobs([add.prepare(1, 2), ("add", 1, 2)])  # type: ignore[list-item]
    assert len(stored(app)) == 1


def test_a_single_enqueue_stores_the_row_a_bulk_of_one_task_stores(app: Conveyor) -> None:
    """One job, and a bulk of like jobs, take two statements of their own on PostgreSQL
    (job_insert_one, job_insert_group): every option lands alike through both, and a
    batch's options are resolved once for all its jobs."""

    @app.task(queue="mail", priority=3, timeout=9.0, tags=["t"])
    def send(to: str, n: int = 0) -> None: ...

    task = send.using(max_attempts=4)
    one = task.enqueue("a", n=1)
    many = task.enqueue_many([("b",), {"to": "c"}, send.call("d", 2)])
    assert [j.created for j in [one, *many]] == [True] * 4
    assert len({j.client_id for j in [one, *many]}) == 4
    records = [j.refresh().record for j in [one, *many]]
    assert [(r.args, r.kwargs) for r in records] == [
        (["a"], {"n": 1}), (["b"], {}), ([], {"to": "c"}), (["d", 2], {})]
    for record in records:
        assert (record.task, record.queue, record.priority, record.max_attempts,
                record.timeout, record.state, record.tags) == (
            "send", "mail", 3, 4, 9.0, "available", ["t"])
        assert abs((record.run_at - record.created_at).total_seconds()) < 0.01
    assert [r.id for r in records] == sorted(r.id for r in records)
    with pytest.raises(InvalidArgumentsError, match="n"):
        task.enqueue_many([("e",), ("f", "2")])  # each job's arguments are still checked
    assert len(stored(app)) == 4
