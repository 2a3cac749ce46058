"""Contract: leases. A worker that lost its lease changes nothing; a dead worker's
jobs come back."""

from __future__ import annotations

import json
import time
from typing import Any

from conveyor import Conveyor, JobState
from conveyor.backends.base import Completion, FetchParams, HeldJob, JobFilter, StatsQuery

LEASE = 0.3


def lease_one(app: Conveyor, worker: str, lease: float = LEASE, start: int = 1) -> Any:
    """Fetch the job as a worker with a free slot does: its attempt starts at once."""
    jobs = app.backend.job_fetch(FetchParams(worker, ["default"], 1, lease, start=start))
    assert len(jobs) == 1
    return jobs[0]


def error_json(attempt: int) -> str:
    return json.dumps({"attempt": attempt, "type": "X", "message": "m", "traceback": "",
                       "worker": "w", "at": 0.0})


def test_fetch_leases_a_job_to_exactly_one_worker(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    job = noop.enqueue()
    first = lease_one(app, "a", lease=30)
    assert app.backend.job_fetch(FetchParams("b", ["default"], 10, 30)) == []
    assert first.id == job.id and first.attempt == 1 and first.lease_owner == "a"
    assert first.lease_token >= 1 and job.refresh().state is JobState.RUNNING


def test_expired_lease_is_rescued_and_counts_as_a_failed_attempt(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    job = noop.enqueue()
    lease_one(app, "crashed-worker")
    assert app.backend.job_rescue() == []  # lease still valid
    time.sleep(LEASE + 0.1)
    assert app.backend.job_rescue() == [job.id]
    record = job.refresh().record
    assert record.state is JobState.AVAILABLE and record.attempt == 1
    assert record.errors[0].type == "conveyor.errors.LeaseExpired"
    assert record.errors[0].worker == "crashed-worker"


def test_rescue_of_the_last_attempt_ends_dead(app: Conveyor) -> None:
    @app.task(max_attempts=1)
    def poison() -> None: ...

    job = poison.enqueue()
    lease_one(app, "crashed-worker")
    time.sleep(LEASE + 0.1)
    app.backend.job_rescue()
    assert job.refresh().state is JobState.DEAD


def test_late_completion_after_losing_the_lease_is_refused(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    job = noop.enqueue()
    old = lease_one(app, "paused-worker")
    time.sleep(LEASE + 0.1)
    app.backend.job_rescue()
    new = lease_one(app, "new-owner", lease=30)
    assert new.lease_token > old.lease_token
    for outcome in ("succeeded", "retry", "dead"):
        late = Completion(old.id, old.lease_token, outcome, result_json="1",
                          error_json=error_json(1))
        assert app.backend.job_complete_many([late]) == []
    assert job.refresh().state is JobState.RUNNING and job.record.lease_owner == "new-owner"
    assert app.backend.job_heartbeat("paused-worker", [HeldJob(old.id, old.lease_token)], 30) == []
    assert app.backend.job_release_many("paused-worker", [HeldJob(old.id, old.lease_token)]) == []
    done = Completion(new.id, new.lease_token, "succeeded", result_json='"mine"')
    assert app.backend.job_complete_many([done]) == [job.id]
    assert job.wait(1) == "mine"


def test_a_second_completion_cannot_overwrite_the_first(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    job = noop.enqueue()
    held = lease_one(app, "w", lease=30)
    ok = Completion(held.id, held.lease_token, "succeeded", result_json='"first"')
    again = Completion(held.id, held.lease_token, "dead", error_json=error_json(1))
    assert app.backend.job_complete_many([ok]) == [job.id]
    assert app.backend.job_complete_many([again]) == []
    assert job.wait(1) == "first"


def test_heartbeat_keeps_the_lease_alive(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    job = noop.enqueue()
    held = lease_one(app, "w")
    for _ in range(4):
        time.sleep(LEASE / 3)
        assert app.backend.job_heartbeat("w", [HeldJob(held.id, held.lease_token)], LEASE) == [
            job.id]
    assert app.backend.job_rescue() == []
    assert job.refresh().state is JobState.RUNNING


def test_retry_completion_schedules_the_next_attempt(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    job = noop.enqueue()
    held = lease_one(app, "w", lease=30)
    retry = Completion(held.id, held.lease_token, "retry", error_json=error_json(1),
                       retry_delay=60)
    assert app.backend.job_complete_many([retry]) == [job.id]
    record = job.refresh().record
    assert record.state is JobState.SCHEDULED and record.lease_owner is None
    assert record.run_at.timestamp() > app.backend.now() + 50


def test_a_killed_workers_job_runs_again_within_lease_plus_poll(make_app: Any) -> None:
    app = make_app(lease=LEASE, poll_interval=0.05)
    runs: list[int] = []

    @app.task()
    def work() -> None:
        runs.append(1)

    job = work.enqueue()
    lease_one(app, "killed")  # a worker that fetched, then vanished
    started = time.monotonic()
    worker = app.worker(install_signals=False, burst=False)
    import threading

    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        job.wait(5)
    finally:
        worker.stop()
        thread.join(5)
    assert runs == [1]
    assert time.monotonic() - started < LEASE + 1.0
    assert job.record.attempt == 2  # the lost attempt counted


def test_release_with_a_delay_schedules_the_job_without_counting_the_attempt(
    app: Conveyor,
) -> None:
    @app.task()
    def noop() -> None: ...

    job = noop.enqueue()
    held = lease_one(app, "w", lease=30)
    before = app.backend.now()
    # A stale token changes nothing: the release is fenced like every other write.
    assert app.backend.job_release_many("w", [HeldJob(job.id, held.lease_token + 1)], 60) == []
    assert app.backend.job_release_many("w", [HeldJob(job.id, held.lease_token)], 60) == [job.id]
    record = job.refresh().record
    assert record.state is JobState.SCHEDULED and record.attempt == 0
    assert record.lease_owner is None and record.lease_expires_at is None
    assert 59 <= record.run_at.timestamp() - before <= 61
    assert record.errors == []
    assert app.backend.job_fetch(FetchParams("w", ["default"], 1, 30)) == []  # not due yet


def attempts_counted(app: Conveyor) -> int:
    now = app.backend.now()
    return sum(r.attempts for r in app.backend.stats_read(StatsQuery(now - 3600, now + 60)))


def expire_and_rescue(app: Conveyor, job_id: int) -> None:
    time.sleep(LEASE + 0.1)
    assert app.backend.job_rescue() == [job_id]


def test_a_job_fetched_but_never_started_gets_its_attempt_back_once(app: Conveyor) -> None:
    @app.task(max_attempts=1)
    def noop() -> None: ...

    job = noop.enqueue()
    lease_one(app, "crashed-worker", start=0)  # prefetched: the worker died before starting it
    expire_and_rescue(app, job.id)
    record = job.refresh().record
    assert record.state is JobState.AVAILABLE and record.attempt == 0
    # The lease did expire, and the history says so, and that the attempt was not counted.
    [entry] = record.errors
    assert entry.type == "conveyor.errors.LeaseExpired" and "not counted" in entry.message
    assert attempts_counted(app) == 0  # nor in the per-minute aggregates


def test_a_recorded_start_makes_the_rescue_count_and_is_fenced(app: Conveyor) -> None:
    @app.task(max_attempts=5)
    def noop() -> None: ...

    job = noop.enqueue()
    held = lease_one(app, "w1", start=0)
    # A start mark with a stale token changes nothing; the right one is recorded.
    app.backend.job_start_many("w1", [HeldJob(job.id, held.lease_token + 1)])
    app.backend.job_start_many("w1", [HeldJob(job.id, held.lease_token)])
    expire_and_rescue(app, job.id)
    record = job.refresh().record
    assert record.state is JobState.AVAILABLE and record.attempt == 1
    assert [e.type for e in record.errors] == ["conveyor.errors.LeaseExpired"]
    lease_one(app, "w2", start=0)  # never started: attempt given back
    expire_and_rescue(app, job.id)
    assert job.refresh().record.attempt == 1
    lease_one(app, "w3", start=1)  # started at once (marked by the fetch): counted
    expire_and_rescue(app, job.id)
    record = job.refresh().record
    assert record.attempt == 2 and len(record.errors) == 3
    assert ["not counted" in e.message for e in record.errors] == [False, True, False]


def test_start_marks_ride_with_completions_and_the_fetch_marks_the_first_jobs(
    app: Conveyor,
) -> None:
    @app.task(max_attempts=1)
    def noop() -> None: ...

    jobs = [noop.enqueue() for _ in range(4)]
    held = app.backend.job_fetch(FetchParams("w", ["default"], 4, LEASE, start=1))
    assert [h.id for h in held] == [j.id for j in jobs]
    # Job 0 started with the fetch (a free slot); job 1 finishes; job 2 starts with that
    # completion; job 3 was prefetched and never started.
    done = Completion(held[1].id, held[1].lease_token, "succeeded", result_json="null")
    started = [HeldJob(held[2].id, held[2].lease_token)]
    assert app.backend.job_complete_many([done], started=started) == [held[1].id]
    time.sleep(LEASE + 0.1)
    assert sorted(app.backend.job_rescue()) == [jobs[0].id, jobs[2].id, jobs[3].id]
    states = [(j.refresh().state, j.record.attempt) for j in jobs]
    assert states == [(JobState.DEAD, 1), (JobState.SUCCEEDED, 1), (JobState.DEAD, 1),
                      (JobState.AVAILABLE, 0)]
    assert attempts_counted(app) == 3  # the never-started one counts nothing


def test_a_job_given_its_attempt_back_goes_only_to_a_free_slot(app: Conveyor) -> None:
    @app.task(max_attempts=1)
    def noop() -> None: ...

    waited, other = noop.enqueue(), noop.enqueue()
    lease_one(app, "crashed-worker", start=0)  # held in a prefetch, never started
    expire_and_rescue(app, waited.id)
    # Never into a prefetch again (a second crash there would cost it its attempt) ...
    assert [r.id for r in app.backend.job_fetch(
        FetchParams("w", ["default"], 2, 30, start=0))] == [other.id]
    # ... only to a free slot, its start recorded by the fetch.
    [again] = app.backend.job_fetch(FetchParams("w2", ["default"], 2, LEASE, start=1))
    assert again.id == waited.id
    expire_and_rescue(app, waited.id)
    record = waited.refresh().record
    assert record.state is JobState.DEAD and record.attempt == 1
    assert [e.type for e in record.errors] == ["conveyor.errors.LeaseExpired"] * 2
    assert ["not counted" in e.message for e in record.errors] == [True, False]
    # An operator's retry gives a fresh start: it may wait in a prefetch again.
    assert app.backend.job_retry(JobFilter(ids=[waited.id])) == 1
    assert [r.id for r in app.backend.job_fetch(
        FetchParams("w3", ["default"], 2, 30, start=0))] == [waited.id]
