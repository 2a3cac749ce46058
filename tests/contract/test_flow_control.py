"""Shared breakers and retry budgets on each backend: several workers' views of one
database agree (one probe for the fleet, no retry past the budget), whatever races."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from conveyor import CircuitBreaker, Conveyor
from conveyor.events import EventName, JobEvent
from conveyor.middleware import Attempt
from conveyor.worker.breaker import Admission, Breakers

POLICY = CircuitBreaker(
    failure_rate=0.5, min_attempts=4, window=30, cooldown=0.3, max_cooldown=0.3
)


def attempt(n: int, task: str = "call") -> Attempt:
    return Attempt(id=n, task=task, queue="default", attempt=1, max_attempts=5, args=(),
                   kwargs={}, tags=(), worker_id="w")


def fleet(app: Conveyor, size: int, **options: Any) -> tuple[list[Breakers], list[JobEvent]]:
    """`size` workers' breakers on `app`'s database, each with its own cache."""
    seen: list[JobEvent] = []
    app.events.subscribe(seen.append)
    workers = []
    for i in range(size):
        breakers = Breakers({"call": POLICY}, now=time.time, worker_id=f"w{i}",
                            events=app.events, **options)
        breakers.attach(app.backend)
        workers.append(breakers)
    return workers, seen


def race(calls: list[Callable[[], Admission]]) -> list[Admission]:
    """Run every call at once, from its own thread."""
    results: list[Admission | None] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_failures_from_every_worker_count_toward_one_breaker_that_opens_once(
    app: Conveyor,
) -> None:
    workers, seen = fleet(app, 4)
    for i, breakers in enumerate(workers):  # one failure each: 4 of 4 across the fleet
        assert breakers.admit(attempt(i)).wait == 0
        breakers.record(attempt(i), True)
    assert [e.name for e in seen] == [EventName.BREAKER_OPENED]
    assert seen[0].job_id == 3 and "4 of the last 4" in (seen[0].detail or "")
    for breakers in workers:  # each learns it at its next admission (suspect: reads)
        admission = breakers.admit(attempt(9))
        assert 0 < admission.wait <= POLICY.cooldown
    assert workers[0].state("call") == "open"


def test_half_open_lets_exactly_one_probe_through_for_the_whole_fleet(app: Conveyor) -> None:
    workers, seen = fleet(app, 8)
    for i in range(4):
        workers[0].record(attempt(i), True)
    time.sleep(POLICY.cooldown + 0.05)
    admissions = race([lambda b=b, i=i: b.admit(attempt(100 + i)) for i, b in enumerate(workers)])
    probes = [a for a in admissions if a.probe is not None]
    assert len(probes) == 1 and probes[0].wait == 0
    assert all(a.wait > 0 for a in admissions if a.probe is None)
    prober = workers[[a.probe is not None for a in admissions].index(True)]
    prober.record(attempt(100), False, probe=probes[0].probe)
    assert [e.name for e in seen] == [
        EventName.BREAKER_OPENED, EventName.BREAKER_HALF_OPEN, EventName.BREAKER_CLOSED
    ]
    assert all(b.state("call") == "closed" for b in workers)
    assert workers[1].admit(attempt(200)) == Admission(0.0)


def test_a_probe_claim_whose_holder_never_answers_expires_and_another_worker_probes(
    app: Conveyor,
) -> None:
    workers, seen = fleet(app, 2, probe_ttl=0.4)
    for i in range(4):
        workers[0].record(attempt(i), True)
    time.sleep(POLICY.cooldown + 0.05)
    held = workers[0].admit(attempt(10))  # this worker "dies" holding the probe
    assert held.probe is not None
    assert workers[1].admit(attempt(11)).probe is None
    time.sleep(0.45)
    second = workers[1].admit(attempt(11))
    assert second.probe is not None and second.wait == 0
    workers[0].record(attempt(10), False, probe=held.probe)  # too late: changes nothing
    assert workers[1].state("call") == "half-open"
    workers[1].record(attempt(11), True, probe=second.probe)  # still down: open again
    assert workers[1].state("call") == "open"
    assert [e.name for e in seen].count(EventName.BREAKER_HALF_OPEN) == 1


def test_a_closed_breaker_costs_no_round_trip_per_attempt(app: Conveyor) -> None:
    calls: list[str] = []
    backend = app.backend

    class Counting:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(backend, name)

    breakers = Breakers({"call": POLICY}, now=time.time, worker_id="w", refresh=60)
    breakers.attach(Counting())  # type: ignore[arg-type]
    for i in range(500):
        assert breakers.admit(attempt(i)).wait == 0
        breakers.record(attempt(i), False)
    assert len(calls) == 1  # the first read; successes wait for the refresh


def test_the_retry_budget_lets_no_more_retries_through_than_it_allows_whatever_the_race(
    app: Conveyor,
) -> None:
    backend = app.backend
    backend.retry_budget_count("t", 20)
    allowed: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        for _ in range(5):
            use = backend.retry_budget_take("t", first_attempts=0, window=60, ratio=0.25,
                                            floor=3)
            with lock:
                allowed.append(use.allowed)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(allowed) == 40
    assert sum(allowed) == 8  # 0.25 x 20 first attempts + a floor of 3
    use = backend.retry_budget_take("t", first_attempts=4, window=60, ratio=0.25, floor=3)
    assert use.allowed and (use.first_attempts, use.retries) == (24, 9)
    other = backend.retry_budget_take("u", first_attempts=0, window=60, ratio=0.25, floor=1)
    assert other.allowed  # budgets are per task


def test_the_budget_is_the_app_default_unless_the_task_sets_or_refuses_one(
    make_app: Any,
) -> None:
    from conveyor import RetryBudget
    from conveyor.retry import DEFAULT_RETRY_BUDGET

    own = RetryBudget(ratio=0.5, floor=1, window=5)
    app = make_app()
    app.task(name="plain")(lambda: None)
    app.task(name="own", retry_budget=own)(lambda: None)
    app.task(name="none", retry_budget=False)(lambda: None)
    budgets = app.worker(install_signals=False).retry_budgets.budgets
    assert budgets == {"plain": DEFAULT_RETRY_BUDGET, "own": own}
    quiet = make_app(retry_budget=None)
    quiet.task(name="plain")(lambda: None)
    quiet.task(name="own", retry_budget=own)(lambda: None)
    worker = quiet.worker(install_signals=False)
    assert worker.retry_budgets.budgets == {"own": own}
    bare = make_app(retry_budget=None)
    bare.task(name="plain")(lambda: None)
    # No budget and no breaker: the worker runs attempts with no middleware at all.
    assert bare.worker(install_signals=False)._attempt_middleware(traced=False) == []


def test_transitions_and_deferred_retries_are_counted_in_the_metrics(app: Conveyor) -> None:
    from conveyor.observability.prometheus import JobMetrics

    metrics = JobMetrics(app)
    workers, _ = fleet(app, 1)
    for i in range(4):
        workers[0].record(attempt(i), True)
    time.sleep(POLICY.cooldown + 0.05)
    probe = workers[0].admit(attempt(10))
    workers[0].record(attempt(10), False, probe=probe.probe)
    app.events.emit(JobEvent(EventName.RETRY_DEFERRED, 11, "call", "default", attempt=2,
                             retry_delay=1.0, detail="retry budget spent"))

    def value(name: str, labels: dict[str, str]) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    for state in ("open", "half_open", "closed"):
        assert value("conveyor_breaker_transitions_total", {"task": "call", "state": state}) == 1
    assert value("conveyor_retry_budget_deferred_total",
                 {"queue": "default", "task": "call"}) == 1
    assert value("conveyor_jobs_failed_total", {"queue": "default", "task": "call"}) is None
    metrics.close()
