"""The durable event log and the incidents, on both backends."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import EventFilter, EventInsert
from conveyor.errors import OperationError
from conveyor.events import OpsEvent


def test_published_events_are_written_in_batches_and_read_back_by_time_and_kind(
    app: Conveyor,
) -> None:
    for i in range(50):
        app.events.publish(OpsEvent("worker.started", f"w{i}", {"queues": ["default"]}))
    two_hours_ago = app.backend.now() - 7200.0
    app.events.publish(OpsEvent("breaker.opened", "smtp", {"failures": 5}, at=two_hours_ago))
    assert app.event_log.flush() == 51
    assert app.event_log.flush() == 0  # written once
    backend = app.backend
    workers = backend.event_list(EventFilter(kind="worker", limit=100))
    assert len(workers) == 50 and {e.kind for e in workers} == {"worker.started"}
    assert workers[0].details == {"queues": ["default"]}
    # An exact kind, a family, and a family that is only a prefix of a word (no match).
    assert [e.subject for e in backend.event_list(EventFilter(kind="breaker.opened"))] == ["smtp"]
    assert backend.event_list(EventFilter(kind="work")) == []
    old = backend.event_list(EventFilter(until=two_hours_ago + 1))
    assert [(e.kind, e.at) for e in old] == [("breaker.opened", pytest.approx(two_hours_ago))]
    # The retention drops the old one only.
    assert backend.event_prune(older_than=3600.0) == 1
    assert backend.event_list(EventFilter(kind="breaker")) == []


def test_a_features_own_event_published_on_the_bus_is_recorded_without_new_code(
    app: Conveyor,
) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class LimitThrottled:  # what a flow-control feature might emit
        name: str
        limit: str
        waiting: int

    app.events.publish(LimitThrottled("limit.throttled", "smtp-rate", 12))
    app.event_log.flush()
    [event] = app.backend.event_list(EventFilter(kind="limit"))
    assert (event.kind, event.subject, event.details) == (
        "limit.throttled", "smtp-rate", {"limit": "smtp-rate", "waiting": 12})


def test_malformed_and_huge_details_are_stored_as_a_note_never_raised(app: Conveyor) -> None:
    app.events.publish(OpsEvent("x" * 500, "s" * 5000, {"big": "y" * 100_000}))
    app.events.publish(OpsEvent("odd", details={"nan": float("nan"), "obj": object()}))
    assert app.event_log.flush() == 2
    stored = {e.kind[:5]: e for e in app.backend.event_list(EventFilter())}
    assert len(stored["xxxxx"].kind) == 100 and len(stored["xxxxx"].subject) == 1000
    assert stored["xxxxx"].details == {"truncated": True, "size": pytest.approx(100_012, abs=20)}
    assert "unreadable_details" in stored["odd"].details


def test_events_published_while_the_database_is_away_are_kept_for_the_next_flush(
    app: Conveyor,
) -> None:
    # A real backend that does not answer (nothing listens on port 1).
    away = Conveyor("postgresql://postgres@127.0.0.1:1/none", connect_timeout=0.2)
    real = app.event_log._writer
    app.event_log._writer = lambda: away.backend
    app.events.publish(OpsEvent("worker.started", "w1"))
    assert app.event_log.flush() == 0
    app.event_log._writer = real
    away.close()
    assert app.event_log.flush() == 1
    assert [e.subject for e in app.backend.event_list(EventFilter())] == ["w1"]


def test_an_annotation_is_durable_when_the_call_returns_and_checked(app: Conveyor) -> None:
    app.annotate("deployed v1.4.2", by="ci", kind="annotation.deploy", subject="v1.4.2")
    [note] = app.backend.event_list(EventFilter(kind="annotation"))
    assert (note.kind, note.subject, note.actor, note.details["text"]) == (
        "annotation.deploy", "v1.4.2", "ci", "deployed v1.4.2")
    for bad in ("", "x" * 3000, "nul\x00"):
        with pytest.raises(OperationError):
            app.annotate(bad)
    with pytest.raises(OperationError, match=r"annotation\.deploy"):
        app.annotate("ok", kind="deploy; drop table")


def test_an_alert_opens_one_incident_however_often_it_fires_and_closing_twice_is_a_no_op(
    app: Conveyor,
) -> None:
    backend = app.backend
    first, new = backend.incident_open("emails burning", "alert:k", alert_key="k",
                                       details={"objective": "emails"})
    again, new_again = backend.incident_open("emails burning", "alert:k", alert_key="k")
    assert new and not new_again and again == first
    other, _ = backend.incident_open("by hand", "cli:ann@host")
    assert other != first
    assert backend.incident_open_for_alert("k") == first
    assert backend.incident_close(first, "alert:k", details={"budget_left": 0.5})
    assert not backend.incident_close(first, "alert:k")
    assert backend.incident_open_for_alert("k") is None
    reopened, new3 = backend.incident_open("emails burning", "alert:k", alert_key="k")
    assert new3 and reopened not in (first, other)
    got = backend.incident_get(first)
    assert got is not None and got.closed_at is not None and got.closed_at >= got.opened_at
    assert got.details == {"objective": "emails"} and got.close_details == {"budget_left": 0.5}
    assert [i.id for i in backend.incident_list()] == [reopened, other, first]
    assert [i.id for i in backend.incident_list(open_only=True)] == [reopened, other]
    assert backend.incident_get(10_000) is None


def test_a_batch_of_events_is_one_statement_and_costs_little(app: Conveyor) -> None:
    backend = app.backend
    batch = [EventInsert("worker.started", f"w{i}") for i in range(1000)]
    started = time.perf_counter()
    assert backend.event_insert_many(batch) == 1000
    assert time.perf_counter() - started < 5.0  # one statement, not 1000 round trips


def test_workers_starting_stopping_and_dying_are_in_the_event_log(make_app: Any) -> None:
    from conveyor.backends.base import FetchParams
    from tests.incidents.test_detectors import running, wait_until

    app: Conveyor = make_app(lease=0.5, poll_interval=0.05)

    @app.task
    def work() -> None:
        pass

    work.enqueue()
    # A worker that leased the job and died: its lease expires and the rescuer says so.
    assert app.backend.job_fetch(FetchParams("dead-worker", ["default"], 1, 0.3, start=1))
    with running(app, heartbeat_interval=0.1, worker_id="rescuer") as worker:
        def died() -> list[Any]:
            app.event_log.flush()
            return app.backend.event_list(EventFilter(kind="worker.died"))

        wait_until(lambda: bool(died()))
        assert died()[0].details["why"] == "lease expired" and died()[0].details["jobs"] == 1
        assert worker.id == "rescuer"
    app.event_log.flush()
    kinds = [(e.kind, e.subject) for e in app.backend.event_list(EventFilter(kind="worker"))]
    assert ("worker.started", "rescuer") in kinds and ("worker.stopped", "rescuer") in kinds
