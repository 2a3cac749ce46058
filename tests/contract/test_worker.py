"""Contract: running jobs, retries, the dead-letter queue, timeouts and shutdown."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conveyor import CircuitBreaker, Conveyor, Discard, JobFailed, JobState, Retry, RetryAfter
from conveyor.backends.base import FetchParams, JobFilter
from conveyor.testing import drain

FAST = Retry(base=0.01, factor=2, cap=0.05)


def run_burst(app: Conveyor, **settings: Any) -> Any:
    worker = app.worker(burst=True, install_signals=False, **settings)
    worker.run()
    return worker


def test_sync_and_async_tasks_run_and_store_their_result(app: Conveyor) -> None:
    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

    @app.task()
    async def double(x: int) -> dict[str, int]:
        return {"x": x * 2}

    a, b = add.enqueue(2, 3), double.enqueue(21)
    run_burst(app)
    assert a.wait(5) == 5
    assert b.wait(5) == {"x": 42}
    record = a.record
    assert record.state is JobState.SUCCEEDED and record.attempt == 1
    assert record.finished_at is not None and record.lease_owner is None


def test_failed_attempts_are_retried_with_one_error_entry_each(app: Conveyor) -> None:
    calls: list[int] = []

    @app.task(max_attempts=5, retry=FAST)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    job = flaky.enqueue()
    drain(app, timeout=10)
    assert job.wait(1) == "ok"
    errors = job.record.errors
    assert [e.attempt for e in errors] == [1, 2]
    assert errors[0].type == "builtins.ConnectionError" and errors[0].message == "try 1"
    assert "ConnectionError" in errors[0].traceback and errors[0].worker


def test_exhausted_attempts_end_dead_and_wait_raises(app: Conveyor) -> None:
    @app.task(max_attempts=3, retry=FAST)
    def always_fails() -> None:
        raise ValueError("nope")

    job = always_fails.enqueue()
    drain(app, timeout=10)
    with pytest.raises(JobFailed, match="dead after 3 attempt"):
        job.wait(1)
    assert job.record.state is JobState.DEAD
    assert [e.attempt for e in job.record.errors] == [1, 2, 3]


def test_retry_after_reschedules_at_exactly_that_delay(app: Conveyor) -> None:
    @app.task(max_attempts=3)
    def rate_limited() -> None:
        raise RetryAfter(120, "429 from the API")

    job = rate_limited.enqueue()
    before = app.backend.now()
    run_burst(app)
    record = job.refresh().record
    assert record.state is JobState.SCHEDULED and record.attempt == 1
    assert 119 <= record.run_at.timestamp() - before <= 122
    assert record.errors[0].type == "conveyor.errors.RetryAfter"


def test_discard_sends_the_job_to_dead_at_once(app: Conveyor) -> None:
    @app.task(max_attempts=10)
    def pointless() -> None:
        raise Discard("user deleted")

    job = pointless.enqueue()
    run_burst(app)
    record = job.refresh().record
    assert record.state is JobState.DEAD and record.attempt == 1
    assert record.errors[-1].message == "user deleted"


def test_dont_retry_errors_go_dead_at_once(app: Conveyor) -> None:
    @app.task(max_attempts=10, dont_retry=[KeyError])
    def lookup() -> None:
        raise KeyError("missing")

    job = lookup.enqueue()
    run_burst(app)
    assert job.refresh().state is JobState.DEAD and job.record.attempt == 1


def test_errors_outside_retry_on_go_dead_at_once(app: Conveyor) -> None:
    @app.task(max_attempts=10, retry_on=[ConnectionError])
    def parse() -> None:
        raise ValueError("bad data will stay bad")

    job = parse.enqueue()
    run_burst(app)
    assert job.refresh().state is JobState.DEAD and job.record.attempt == 1


def test_unknown_task_goes_dead_with_a_clear_error_and_the_worker_keeps_running(
    make_app: Any,
) -> None:
    producer = make_app()
    consumer = make_app()

    @producer.task(name="only_in_producer")
    def gone() -> None: ...

    @consumer.task(name="fine")
    def fine() -> int:
        return 1

    @producer.task(name="fine")
    def fine_producer_side() -> int:
        return 1

    lost = gone.enqueue()
    ok = fine_producer_side.enqueue()
    run_burst(consumer)
    assert lost.refresh().state is JobState.DEAD
    assert "no task named 'only_in_producer'" in lost.record.errors[0].message
    assert ok.wait(1) == 1


def test_priority_zero_runs_first_within_a_queue(app: Conveyor) -> None:
    order: list[int] = []

    @app.task()
    def record(n: int) -> None:
        order.append(n)

    for n in range(5):
        record.using(priority=9).enqueue(n)
    record.using(priority=0).enqueue(99)
    run_burst(app, concurrency=1)
    assert order[0] == 99


def test_a_backlog_in_one_queue_does_not_starve_another(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    for _ in range(50):
        noop.using(queue="bulk").enqueue()
    urgent = noop.using(queue="urgent").enqueue()
    jobs = app.backend.job_fetch(FetchParams("w", ["bulk", "urgent"], 2, 30))
    assert urgent.id in [j.id for j in jobs]


def test_delayed_job_does_not_start_before_run_at(app: Conveyor) -> None:
    started: list[float] = []

    @app.task()
    def stamp() -> None:
        started.append(app.backend.now())

    job = stamp.using(delay=0.4).enqueue()
    planned = job.record.run_at.timestamp()
    run_burst(app)  # nothing is due yet: the burst worker finds no work
    assert started == [] and job.refresh().state is JobState.SCHEDULED
    drain(app, timeout=5)
    assert started and started[0] >= planned
    assert started[0] - planned < 1.0


def test_soft_timeout_fails_a_thread_attempt(app: Conveyor) -> None:
    release = threading.Event()

    @app.task(timeout=0.2, max_attempts=1)
    def hangs() -> None:
        release.wait(10)

    job = hangs.enqueue()
    worker = app.worker(install_signals=False, grace=0)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        with pytest.raises(JobFailed, match="timeout"):
            job.wait(10)
    finally:
        release.set()
        worker.stop()
        thread.join(10)
    assert job.record.errors[0].type == "conveyor.errors.TaskTimeout"


def test_async_timeout_cancels_the_coroutine(app: Conveyor) -> None:
    import asyncio

    @app.task(timeout=0.1, max_attempts=1)
    async def sleeps() -> None:
        await asyncio.sleep(30)

    job = sleeps.enqueue()
    run_burst(app)
    assert job.refresh().state is JobState.DEAD
    assert job.record.errors[0].type == "conveyor.errors.TaskTimeout"


def test_graceful_stop_lets_running_jobs_finish(app: Conveyor) -> None:
    started = threading.Event()

    @app.task()
    def slow() -> str:
        started.set()
        time.sleep(0.3)
        return "done"

    job = slow.enqueue()
    worker = app.worker(install_signals=False, grace=10)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(10)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert job.refresh().state is JobState.SUCCEEDED


def test_stop_after_grace_releases_running_jobs_without_counting_the_attempt(
    app: Conveyor,
) -> None:
    started, release = threading.Event(), threading.Event()

    @app.task()
    def stuck() -> None:
        started.set()
        release.wait(10)

    job = stuck.enqueue()
    worker = app.worker(install_signals=False, grace=0.1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(10)
    worker.stop()
    thread.join(10)
    release.set()
    record = job.refresh().record
    assert record.state is JobState.AVAILABLE
    assert record.attempt == 0 and record.lease_owner is None
    assert worker.stats.released == 1


def test_dead_jobs_are_kept_and_an_operator_retry_gives_fresh_attempts(app: Conveyor) -> None:
    fail = [True]

    @app.task(max_attempts=2, retry=FAST)
    def fragile() -> str:
        if fail[0]:
            raise RuntimeError("dependency down")
        return "ok"

    job = fragile.enqueue()
    drain(app, timeout=10)
    assert job.refresh().state is JobState.DEAD
    app.backend.job_prune(older_than=0)
    assert job.refresh().state is JobState.DEAD  # pruning never removes dead jobs
    fail[0] = False
    assert app.backend.job_retry(JobFilter(ids=[job.id])) == 1
    assert job.refresh().record.attempt == 0
    drain(app, timeout=10)
    assert job.wait(1) == "ok"
    assert len(job.record.errors) == 2  # the history of the dead run stays


def test_finished_jobs_are_pruned_after_retention(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    old = noop.enqueue()
    run_burst(app)
    assert app.backend.job_prune(older_than=3600) == 0
    time.sleep(0.05)
    assert app.backend.job_prune(older_than=0.01) == 1
    assert app.get_job(old.id) is None


def test_pruning_keeps_up_with_history_larger_than_one_batch(make_app: Any) -> None:
    app = make_app(retention=0.0)

    @app.task()
    def noop() -> None: ...

    noop.enqueue_many([()] * 1_000)
    run_burst(app, concurrency=8)
    assert len(app.backend.job_list(JobFilter(states=[JobState.SUCCEEDED], limit=2_000))) == 1_000
    # Batches of 100, one pass every 0.3 s: a pass that stopped after one batch would
    # leave 700 jobs after a second.
    worker = app.worker(install_signals=False, prune_interval=0.3, prune_batch=100)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        time.sleep(1.0)
    finally:
        worker.stop()
        runner.join(10)
    assert app.backend.job_list(JobFilter(limit=10)) == []


def test_cancel_only_works_before_the_job_starts(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    waiting = noop.using(delay=60).enqueue()
    assert waiting.cancel() is True and waiting.state is JobState.CANCELLED
    done = noop.enqueue()
    run_burst(app)
    assert done.cancel() is False and done.state is JobState.SUCCEEDED


def test_queue_stats_count_jobs_by_state(app: Conveyor) -> None:
    @app.task()
    def noop() -> None: ...

    noop.enqueue()
    noop.enqueue()
    noop.using(delay=60).enqueue()
    noop.using(queue="other").enqueue()
    stats = {s.queue: s for s in app.backend.queue_stats()}
    assert stats["default"].counts[JobState.AVAILABLE] == 2
    assert stats["default"].counts[JobState.SCHEDULED] == 1
    assert stats["other"].counts[JobState.AVAILABLE] == 1
    assert stats["default"].oldest_available_age is not None


def test_worker_records_its_heartbeat_while_running(app: Conveyor) -> None:
    started = threading.Event()

    @app.task()
    def slow() -> None:
        started.set()
        time.sleep(0.3)

    slow.enqueue()
    worker = app.worker(install_signals=False, heartbeat_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(10)
    time.sleep(0.15)
    alive = app.backend.worker_list(alive_within=5)
    worker.stop()
    thread.join(10)
    assert [w.id for w in alive] == [worker.id]
    assert app.backend.worker_list(alive_within=5) == []  # removed on a clean stop


def test_an_open_circuit_makes_jobs_wait_instead_of_burning_their_attempts(
    app: Conveyor,
) -> None:
    down = threading.Event()
    down.set()
    calls: list[int] = []

    @app.task(
        max_attempts=3,
        retry=FAST,
        breaker=CircuitBreaker(
            failure_rate=0.5, min_attempts=4, window=60, cooldown=0.5, max_cooldown=1.0
        ),
    )
    def call_api(i: int) -> int:
        calls.append(i)
        if down.is_set():
            raise ConnectionError("api down")
        return i

    jobs = call_api.enqueue_many([(i,) for i in range(20)])
    worker = app.worker(concurrency=1, install_signals=False)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_until(lambda: worker.stats.deferred >= 5, "jobs deferred by the open circuit")
        # Without the breaker, 20 jobs x 3 attempts would all be dead by now.
        assert not [j for j in jobs if j.refresh().state is JobState.DEAD]
        down.clear()  # the dependency is back: the next probe closes the circuit
        wait_until(
            lambda: all(j.refresh().state is JobState.SUCCEEDED for j in jobs),
            "every job succeeded once the dependency was back",
            timeout=30,
        )
    finally:
        worker.stop()
        runner.join(10)
    assert worker.breakers.state("call_api") == "closed"
    records = [j.record for j in jobs]
    failed_attempts = sum(len(r.errors) for r in records)
    # 4 failures opened the circuit; at most a couple of failed probes after that.
    assert 4 <= failed_attempts <= 7
    assert len(calls) == 20 + failed_attempts  # deferred jobs never ran while open
    assert sum(1 for r in records if r.attempt == 1 and not r.errors) >= 13


def wait_until(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.02)
