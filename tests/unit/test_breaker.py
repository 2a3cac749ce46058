"""The circuit breaker's state machine, on a clock the test moves."""

from __future__ import annotations

import pytest

from conveyor import CircuitBreaker, ConfigurationError
from conveyor.clock import ManualClock
from conveyor.worker.breaker import Breakers

POLICY = CircuitBreaker(failure_rate=0.5, min_attempts=4, window=10, cooldown=5, max_cooldown=12)


def board(policy: CircuitBreaker = POLICY) -> tuple[Breakers, ManualClock]:
    clock = ManualClock()
    return Breakers({"t": policy}, now=clock.now), clock


def trip(breakers: Breakers) -> None:
    for _ in range(4):
        breakers.record("t", True)
    assert breakers.state("t") == "open"


def test_it_stays_closed_until_the_window_holds_enough_attempts() -> None:
    breakers, _ = board()
    for _ in range(3):
        breakers.record("t", True)
    assert breakers.state("t") == "closed"
    assert breakers.admit("t").wait == 0


def test_it_opens_at_the_failure_rate_and_not_below_it() -> None:
    breakers, _ = board()
    for failed in (True, False, False, False, True):
        breakers.record("t", failed)
    assert breakers.state("t") == "closed"  # 2 of 5 < 50 %
    breakers.record("t", True)
    assert breakers.state("t") == "open"  # 3 of 6


def test_failures_older_than_the_window_are_forgotten() -> None:
    breakers, clock = board()
    for _ in range(3):
        breakers.record("t", True)
    clock.advance(11)
    breakers.record("t", True)
    assert breakers.state("t") == "closed"  # only one failure is within the window


def test_verdict_free_outcomes_do_not_count() -> None:
    breakers, _ = board()
    for _ in range(10):
        breakers.record("t", None)
    assert breakers.state("t") == "closed"


def test_an_open_circuit_says_how_long_to_wait_then_lets_one_probe_through() -> None:
    breakers, clock = board()
    trip(breakers)
    assert breakers.admit("t").wait == pytest.approx(5)
    clock.advance(3)
    assert breakers.admit("t").wait == pytest.approx(2)
    clock.advance(2)
    probe = breakers.admit("t")
    assert probe.wait == 0 and probe.probe and breakers.state("t") == "half-open"
    other = breakers.admit("t")
    assert other.wait == pytest.approx(5) and not other.probe  # one probe at a time


def test_a_successful_probe_closes_the_circuit() -> None:
    breakers, clock = board()
    trip(breakers)
    clock.advance(5)
    probe = breakers.admit("t")
    breakers.record("t", False, probe=probe.probe)
    assert breakers.state("t") == "closed" and breakers.admit("t").wait == 0


def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() -> None:
    breakers, clock = board()
    trip(breakers)
    for expected in (10, 12, 12):
        clock.advance(100)
        probe = breakers.admit("t")
        breakers.record("t", True, probe=probe.probe)
        assert breakers.state("t") == "open"
        assert breakers.admit("t").wait == pytest.approx(expected)


def test_a_probe_without_a_verdict_lets_the_next_job_probe() -> None:
    breakers, clock = board()
    trip(breakers)
    clock.advance(5)
    probe = breakers.admit("t")
    breakers.record("t", None, probe=probe.probe)  # e.g. it raised RetryAfter
    assert breakers.admit("t").probe


def test_late_outcomes_of_attempts_started_before_opening_change_nothing() -> None:
    breakers, clock = board()
    trip(breakers)
    breakers.record("t", False)  # not the probe
    assert breakers.state("t") == "open"
    clock.advance(5)
    breakers.admit("t")
    breakers.record("t", False)  # still not the probe
    assert breakers.state("t") == "half-open"


def test_tasks_without_a_breaker_always_run() -> None:
    breakers, _ = board()
    for _ in range(100):
        breakers.record("other", True)
    assert breakers.admit("other").wait == 0 and breakers.state("other") == "closed"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failure_rate", 0),
        ("failure_rate", 1.5),
        ("min_attempts", 0),
        ("window", -1),
        ("cooldown", float("inf")),
        ("max_cooldown", 1),
    ],
)
def test_a_bad_policy_fails_when_built_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=field):
        CircuitBreaker(**{field: value})  # type: ignore[arg-type]


def test_the_task_decorator_refuses_a_breaker_of_the_wrong_type() -> None:
    from conveyor import Conveyor

    app = Conveyor("sqlite:///:memory:")
    with pytest.raises(ConfigurationError, match=r"breaker= must be a conveyor\.CircuitBreaker"):
        app.task(breaker={"failure_rate": 0.5})  # type: ignore[arg-type]
