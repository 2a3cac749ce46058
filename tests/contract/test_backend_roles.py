"""Contract at the backend level: each role's calls, straight against the real backend
(no app, no worker), on every backend; fencing (a stale lease token changes
nothing) and the error each call raises on bad input."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import (
    AlertState,
    Backend,
    Completion,
    Coordinator,
    FetchParams,
    HeldJob,
    JobFilter,
    JobInsert,
    JobStore,
    QueueAdmin,
    StatsQuery,
    StatsStore,
    TokenInsert,
    TokenStore,
    WorkerInfo,
)
from conveyor.errors import InvalidOptionError, SerializationError
from conveyor.types import JobRecord, JobState


@pytest.fixture
def backend(backend_url: str) -> Iterator[Backend]:
    opened = open_backend(backend_url)
    opened.migrate()
    yield opened
    opened.close()


def insert(jobs: JobStore, **options: Any) -> int:
    spec: dict[str, Any] = {"task": "t", "queue": "q", "args_json": "[[1], {}]",
                            "priority": 5, "max_attempts": 2}
    spec.update(options)
    return jobs.job_insert_many([JobInsert(**spec)])[0].id


def lease(jobs: JobStore, worker: str = "w1", seconds: float = 30.0,
          queues: tuple[str, ...] = ("q",)) -> JobRecord:
    # start=1: the job goes to an idle slot, so the fetch records its start (a rescue
    # then counts the lost attempt).
    fetched = jobs.job_fetch(FetchParams(worker, list(queues), 1, seconds, start=1))
    assert len(fetched) == 1
    return fetched[0]


def error_json(attempt: int) -> str:
    return json.dumps({"attempt": attempt, "type": "builtins.ValueError", "message": "m",
                       "traceback": "", "worker": "w1", "at": time.time()})


# -- JobStore ---------------------------------------------------------------------------
def test_jobs_insert_get_list_and_idempotency(backend: Backend) -> None:
    jobs: JobStore = backend
    first = insert(jobs, idempotency_key="k", tags=("a",), group_key="g")
    again = jobs.job_insert_many([JobInsert("t", "q", "[[2], {}]", 5, 2, idempotency_key="k")])
    assert (again[0].id, again[0].created) == (first, False)
    later = insert(jobs, delay=3600)
    record = jobs.job_get(first)
    assert record is not None and (record.args, record.tags, record.group_key) == ([1], ["a"],
                                                                                   "g")
    assert jobs.job_get(later) is not None and jobs.job_get(later).state is JobState.SCHEDULED  # type: ignore[union-attr]
    assert jobs.job_get(10**12) is None
    assert [r.id for r in jobs.job_list(JobFilter())] == [later, first]  # newest first
    assert [r.id for r in jobs.job_list(JobFilter(states=[JobState.SCHEDULED]))] == [later]
    assert [r.id for r in jobs.job_list(JobFilter(before_id=later))] == [first]
    assert [r.id for r in jobs.job_list(JobFilter(ids=[first], limit=1))] == [first]


@pytest.mark.parametrize("bad", [
    {"args_json": '[["a\\u0000b"], {}]'},
    {"args_json": '[["\\ud800"], {}]'},
    {"args_json": '[[], {"k": "\\udc80"}]'},
    {"task": "t\x00"},
    {"queue": "q\ud800"},
    {"idempotency_key": "\udc80"},
    {"group_key": "g\x00"},
    {"tags": ("ok", "\ud800")},
])
def test_insert_refuses_unstorable_text_and_writes_nothing(backend: Backend,
                                                           bad: dict[str, Any]) -> None:
    good = JobInsert("t", "q", "[[1], {}]", 5, 2)
    spec: dict[str, Any] = {"task": "t", "queue": "q", "args_json": "[[1], {}]",
                            "priority": 5, "max_attempts": 2, **bad}
    with pytest.raises(SerializationError, match="NUL character or a lone surrogate"):
        backend.job_insert_many([good, JobInsert(**spec)])
    assert backend.job_list(JobFilter()) == []


@pytest.mark.parametrize("bad", [
    {"delay": 1e12}, {"delay": -1.0}, {"delay": math.nan}, {"run_at": 1e12},
    {"run_at": -1e12}, {"run_at": math.nan}, {"run_at": 253_402_214_400.0},  # 9999-12-31
])
def test_insert_refuses_times_out_of_bounds(backend: Backend, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidOptionError):
        insert(backend, **bad)
    assert backend.job_list(JobFilter()) == []


def test_a_stale_lease_token_changes_nothing(backend: Backend) -> None:
    jobs: JobStore = backend
    job_id = insert(jobs)
    held = lease(jobs, seconds=30)
    stale = HeldJob(job_id, held.lease_token - 1)
    before = jobs.job_get(job_id)
    assert jobs.job_heartbeat("w1", [stale], 300) == []
    assert jobs.job_heartbeat("w2", [HeldJob(job_id, held.lease_token)], 300) == []
    assert jobs.job_release_many("w1", [stale]) == []
    assert jobs.job_complete_many([Completion(job_id, stale.lease_token, "succeeded",
                                              result_json="1")]) == []
    after = jobs.job_get(job_id)
    assert before is not None and after is not None
    assert (after.state, after.lease_expires_at, after.result) == (
        JobState.RUNNING, before.lease_expires_at, None)
    # With the right token each call applies.
    token = HeldJob(job_id, held.lease_token)
    assert jobs.job_heartbeat("w1", [token], 300) == [job_id]
    assert jobs.job_complete_many([Completion(job_id, held.lease_token, "succeeded",
                                              result_json='{"x": 1.0}')]) == [job_id]
    done = jobs.job_get(job_id)
    assert done is not None and done.state is JobState.SUCCEEDED and done.result == {"x": 1.0}
    # A completion that comes twice applies once.
    assert jobs.job_complete_many([Completion(job_id, held.lease_token, "dead",
                                              error_json=error_json(1))]) == []


def test_release_retry_and_rescue(backend: Backend) -> None:
    jobs: JobStore = backend
    job_id = insert(jobs)
    held = lease(jobs)
    assert jobs.job_release_many("w1", [HeldJob(job_id, held.lease_token)]) == [job_id]
    record = jobs.job_get(job_id)
    assert record is not None and record.state is JobState.AVAILABLE
    held = lease(jobs)
    assert jobs.job_complete_many([Completion(job_id, held.lease_token, "retry",
                                              error_json=error_json(held.attempt),
                                              retry_delay=0.0)]) == [job_id]
    record = jobs.job_get(job_id)
    assert record is not None and record.state is JobState.AVAILABLE and len(record.errors) == 1
    held = lease(jobs, seconds=0.2)
    assert jobs.job_rescue() == []
    time.sleep(0.4)
    assert jobs.job_rescue() == [job_id]
    record = jobs.job_get(job_id)
    assert record is not None and record.errors[-1].type == "conveyor.errors.LeaseExpired"
    # The rescued worker's late completion is fenced out.
    assert jobs.job_complete_many([Completion(job_id, held.lease_token, "succeeded",
                                              result_json="1")]) == []
    assert jobs.job_fetch(FetchParams("w1", ["q"], 0, 30)) == []


def test_unknown_outcome_changes_nothing(backend: Backend) -> None:
    job_id = insert(backend)
    held = lease(backend)
    bogus = Completion(job_id, held.lease_token, "finished", result_json="1")  # type: ignore[arg-type]
    assert backend.job_complete_many([bogus]) == []
    record = backend.job_get(job_id)
    assert record is not None and record.state is JobState.RUNNING
    now = backend.now()
    assert backend.stats_read(StatsQuery(now - 120, now + 120)) == []


# -- QueueAdmin -------------------------------------------------------------------------
def test_queue_administration(backend: Backend) -> None:
    admin: QueueAdmin = backend
    waiting = insert(backend)
    dying = insert(backend, queue="other", max_attempts=1)
    held = lease(backend, queues=("other",))
    backend.job_complete_many([Completion(dying, held.lease_token, "dead",
                                          error_json=error_json(1))])
    stats = {s.queue: s for s in admin.queue_stats()}
    assert stats["q"].counts[JobState.AVAILABLE] == 1 and stats["other"].counts[JobState.DEAD] == 1
    assert admin.job_cancel(dying) is False and admin.job_cancel(10**12) is False
    assert admin.job_retry(JobFilter(ids=[dying])) == 1
    assert admin.job_retry(JobFilter(ids=[dying])) == 0  # no longer dead
    assert admin.job_cancel(waiting) is True and admin.job_cancel(waiting) is False
    assert admin.job_delete(JobFilter(states=[JobState.AVAILABLE])) == 0  # never unfinished
    assert admin.job_delete(JobFilter(ids=[waiting])) == 1
    assert admin.job_prune(older_than=3600) == 0
    assert admin.queue_pause("other", by="ops") is True and admin.queue_pause("other") is False
    assert [(p.queue, p.paused_by) for p in admin.queue_pause_list()] == [("other", "ops")]
    assert backend.job_fetch(FetchParams("w1", ["other"], 5, 30)) == []
    assert admin.queue_resume("other") is True and admin.queue_resume("other") is False
    assert [r.id for r in backend.job_fetch(FetchParams("w1", ["other"], 5, 30))] == [dying]


# -- Coordinator ------------------------------------------------------------------------
def test_coordination(backend: Backend) -> None:
    coord: Coordinator = backend
    assert coord.leader_elect("maintenance", "a", 30) is True
    assert coord.leader_elect("maintenance", "b", 30) is False
    assert coord.leader_elect("maintenance", "a", 30) is True  # renewal
    coord.leader_resign("maintenance", "b")  # not the holder: nothing happens
    assert coord.leader_elect("maintenance", "b", 30) is False
    coord.leader_resign("maintenance", "a")
    assert coord.leader_elect("maintenance", "b", 30) is True
    now = coord.now()
    assert abs(now - time.time()) < 5
    coord.worker_heartbeat(WorkerInfo("w1", "host", 42, ["q"], 4, now, running=2,
                                      meta={"pool": "thread"}))
    [info] = coord.worker_list(alive_within=60)
    assert (info.id, list(info.queues), info.running, info.meta) == ("w1", ["q"], 2,
                                                                      {"pool": "thread"})
    coord.worker_remove("w1")
    assert coord.worker_list(alive_within=60) == []
    started = time.monotonic()
    coord.wait_for_work(0.2)
    assert time.monotonic() - started < 2


# -- StatsStore -------------------------------------------------------------------------
def test_stats_and_alerts(backend: Backend) -> None:
    stats: StatsStore = backend
    since = backend.now() - 120
    job_id = insert(backend)
    held = lease(backend)
    backend.job_complete_many([Completion(job_id, held.lease_token, "retry",
                                          error_json=error_json(1))])
    held = lease(backend)
    backend.job_complete_many([Completion(job_id, held.lease_token, "succeeded",
                                          result_json="null")])
    until = backend.now() + 120
    [row] = stats.stats_read(StatsQuery(since, until))
    assert (row.queue, row.task, row.succeeded, row.retried, row.attempts) == ("q", "t", 1, 1, 2)
    assert stats.stats_read(StatsQuery(since, until, task="other")) == []
    assert stats.stats_error_types(since) == [("builtins.ValueError", 1)]
    assert [(t.queue, t.state, t.jobs) for t in stats.job_throughput(since, 60)] == [
        ("q", JobState.SUCCEEDED, 1)]
    assert stats.stats_prune(older_than=3600) == 0
    stats.alert_set(AlertState("slo:q", True, details={"burn": 2.5}))
    stats.alert_set(AlertState("slo:q", False))
    [alert] = stats.alert_list()
    assert (alert.key, alert.firing, alert.details) == ("slo:q", False, {})


# -- TokenStore -------------------------------------------------------------------------
def test_tokens(backend: Backend) -> None:
    tokens: TokenStore = backend
    digest = hashlib.sha256(b"secret").hexdigest()
    token_id = tokens.token_insert(TokenInsert("ci", digest, "enqueuer", tasks=["t"],
                                               queues=["q"]))
    found = tokens.token_by_hash(digest)
    assert found is not None and (found.id, found.role, list(found.tasks)) == (token_id,
                                                                             "enqueuer", ["t"])
    assert found.last_used_at is None and found.revoked_at is None
    assert tokens.token_by_hash("0" * 64) is None
    tokens.token_touch(token_id)
    [listed] = tokens.token_list()
    assert listed.last_used_at is not None
    assert tokens.token_revoke(token_id) is True and tokens.token_revoke(token_id) is False
    assert tokens.token_revoke(10**9) is False
    revoked = tokens.token_by_hash(digest)
    assert revoked is None or revoked.revoked_at is not None
