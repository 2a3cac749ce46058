"""Contract: the observability tables. Per-minute aggregates are written with the
transitions they count (never lost, never doubled, nothing for a fenced-out write),
leader election gives a role to one holder at a time, alert state survives."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from conveyor import Conveyor, JobState, Retry
from conveyor.backends.base import (
    SCHEMA_VERSION,
    WAIT_BUCKETS,
    AlertState,
    Completion,
    FetchParams,
    JobStats,
    StatsQuery,
)
from conveyor.testing import drain

FAST = Retry(base=0.01, factor=2, cap=0.05)


def totals(app: Conveyor, task: str | None = None) -> JobStats:
    now = app.backend.now()
    rows = app.backend.stats_read(StatsQuery(since=now - 3600, until=now + 60, task=task))
    return JobStats(
        queue="*", task=task or "*", minute=None,
        succeeded=sum(r.succeeded for r in rows), retried=sum(r.retried for r in rows),
        dead=sum(r.dead for r in rows), attempts=sum(r.attempts for r in rows),
        wait_le=tuple(sum(r.wait_le[i] for r in rows) for i in range(len(WAIT_BUCKETS))),
        run_seconds=sum(r.run_seconds for r in rows),
    )


def test_the_observability_migration_is_applied(app: Conveyor) -> None:
    app.backend.schema_check()
    assert SCHEMA_VERSION >= 2
    assert app.migrate(dry_run=True) == []  # 0002 included: nothing left to apply


def test_completions_are_counted_per_outcome_in_the_aggregates(app: Conveyor) -> None:
    calls: dict[int, int] = {}

    @app.task(max_attempts=3, retry=FAST)
    def flaky(n: int) -> int:
        calls[n] = calls.get(n, 0) + 1
        if calls[n] < 2:
            raise ConnectionError("first try fails")
        return n

    @app.task(max_attempts=1)
    def poison() -> None:
        raise ValueError("always")

    @app.task()
    def fine() -> None: ...

    for n in range(3):
        flaky.enqueue(n)
    poison.enqueue()
    poison.enqueue()
    for _ in range(4):
        fine.enqueue()
    drain(app, timeout=30)

    f = totals(app, "flaky")
    assert (f.succeeded, f.retried, f.dead, f.attempts) == (3, 3, 0, 6)
    p = totals(app, "poison")
    assert (p.succeeded, p.retried, p.dead, p.attempts) == (0, 0, 2, 2)
    every = totals(app)
    assert (every.succeeded, every.dead, every.attempts) == (7, 2, 12)
    # Every attempt started within the hour, and the buckets are cumulative.
    assert every.wait_le[-1] == 12
    assert list(every.wait_le) == sorted(every.wait_le)
    assert every.run_seconds >= 0


def test_a_fenced_out_completion_counts_nothing(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    job = noop.enqueue()
    [record] = app.backend.job_fetch(FetchParams("w", ["default"], 1, 30))
    stale = Completion(record.id, record.lease_token + 1, "succeeded", result_json="null")
    assert app.backend.job_complete_many([stale]) == []
    assert totals(app).attempts == 0
    good = Completion(record.id, record.lease_token, "succeeded", result_json="null")
    assert app.backend.job_complete_many([good]) == [job.id]
    # The same completion written twice (a retried batch) is counted once.
    assert app.backend.job_complete_many([good]) == []
    assert (totals(app).succeeded, totals(app).attempts) == (1, 1)


def test_lost_leases_are_counted_as_failed_attempts(app: Conveyor) -> None:
    @app.task(max_attempts=2)
    def noop() -> None: ...

    job = noop.enqueue()
    app.backend.job_fetch(FetchParams("crashed", ["default"], 1, 0.2, start=1))
    time.sleep(0.35)
    assert app.backend.job_rescue() == [job.id]
    assert (totals(app).retried, totals(app).dead) == (1, 0)
    app.backend.job_fetch(FetchParams("crashed-again", ["default"], 1, 0.2, start=1))
    time.sleep(0.35)
    assert app.backend.job_rescue() == [job.id]
    assert job.refresh().state is JobState.DEAD
    t = totals(app)
    assert (t.retried, t.dead, t.attempts) == (1, 1, 2)
    # A second rescue pass finds nothing and counts nothing.
    assert app.backend.job_rescue() == []
    assert totals(app).attempts == 2


def test_per_minute_rows_and_error_types(app: Conveyor) -> None:
    @app.task(max_attempts=1)
    def poison(kind: str) -> None:
        raise {"v": ValueError, "k": KeyError}[kind]("x")

    for kind in ("v", "v", "k"):
        poison.enqueue(kind)
    drain(app, timeout=30)
    now = app.backend.now()
    minutes = app.backend.stats_read(
        StatsQuery(since=now - 3600, until=now + 60, per_minute=True)
    )
    assert minutes and all(m.minute is not None and m.minute % 60 == 0 for m in minutes)
    assert sum(m.dead for m in minutes) == 3
    types = app.backend.stats_error_types(now - 3600, task="poison")
    assert types == [("builtins.ValueError", 2), ("builtins.KeyError", 1)]
    assert app.backend.stats_error_types(now + 3600, task="poison") == []
    assert app.backend.stats_error_types(now - 3600, task="other") == []


def test_stats_prune_drops_only_old_minutes(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    noop.enqueue()
    drain(app, timeout=30)
    assert app.backend.stats_prune(older_than=3600) == 0
    assert totals(app).attempts == 1
    assert app.backend.stats_prune(older_than=-120) >= 1
    assert totals(app).attempts == 0


def test_leader_election_gives_the_role_to_one_holder_at_a_time(app: Conveyor) -> None:
    backend = app.backend
    assert backend.leader_elect("role", "a", ttl=30)
    assert not backend.leader_elect("role", "b", ttl=30)
    assert backend.leader_elect("role", "a", ttl=30)  # renewal
    assert backend.leader_elect("other-role", "b", ttl=30)
    backend.leader_resign("role", "b")  # not the holder: nothing happens
    assert not backend.leader_elect("role", "b", ttl=30)
    backend.leader_resign("role", "a")
    assert backend.leader_elect("role", "b", ttl=0.2)
    assert not backend.leader_elect("role", "a", ttl=30)
    time.sleep(0.35)  # b stopped renewing: its lease ran out
    assert backend.leader_elect("role", "a", ttl=30)
    assert not backend.leader_elect("role", "b", ttl=30)


def test_alert_state_round_trips(app: Conveyor) -> None:
    backend = app.backend
    assert backend.alert_list() == []
    backend.alert_set(AlertState("emails:success:page", True, details={"windows": "1h/5m"}))
    backend.alert_set(AlertState("emails:wait:ticket", False))
    found = {a.key: a for a in backend.alert_list()}
    assert found["emails:success:page"].firing is True
    assert found["emails:success:page"].details == {"windows": "1h/5m"}
    assert found["emails:wait:ticket"].firing is False
    assert abs(found["emails:wait:ticket"].changed_at - backend.now()) < 60
    backend.alert_set(AlertState("emails:success:page", False))
    assert not {a.key: a for a in backend.alert_list()}["emails:success:page"].firing
    json.dumps([a.details for a in backend.alert_list()])


def test_insights_answer_from_the_backend(app: Conveyor) -> None:
    @app.task(max_attempts=1)
    def mixed(ok: bool) -> None:
        if not ok:
            raise ValueError("bad input")

    app.slo("mixed", task=mixed, success=0.5, wait_p99=60.0, window="1d")
    mixed.enqueue_many([(True,), (True,), (False,)])
    drain(app, timeout=30)
    insights = app.insights
    now = insights.now()
    [series] = insights.throughput(since=now - 600)
    assert (series.task, series.succeeded, series.dead) == ("mixed", 2, 1)
    [total] = insights.totals(window=600, task="mixed")
    assert total.attempts == 3
    assert insights.top_errors(now - 600) == [("builtins.ValueError", 1)]
    overview = insights.overview()
    assert overview.totals[JobState.SUCCEEDED] == 2 and overview.totals[JobState.DEAD] == 1
    statuses = {s.sli: s for s in overview.slos}
    assert statuses["success"].sli_value == 2 / 3
    assert statuses["success"].budget_left == 1 - (1 / 3) / 0.5
    assert statuses["wait"].window_counts.total == 3


def test_concurrent_workers_count_every_job_exactly_once(make_app: Any) -> None:
    apps = [make_app() for _ in range(3)]

    @apps[0].task(max_attempts=2, retry=FAST)
    def work(n: int) -> None:
        if n % 20 == 0:
            raise ValueError("every twentieth job always fails: retried once, then dead")

    for other in apps[1:]:
        other.task(name="work", max_attempts=2, retry=FAST)(work.fn)
    work.enqueue_many([(n,) for n in range(1500)])
    threads = [
        threading.Thread(target=lambda a=a: drain(a, timeout=120, concurrency=4))
        for a in apps
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t = totals(apps[0], "work")
    assert (t.succeeded, t.dead) == (1425, 75)
    assert (t.retried, t.attempts) == (75, 1575)
