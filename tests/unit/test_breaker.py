"""The shared circuit breaker's state machine and the retry budget's policy, on stored
rows whose clock the test sets (the database side is in tests/contract/test_flow_control.py)."""

from __future__ import annotations

import dataclasses

import pytest

from conveyor import CircuitBreaker, ConfigurationError, RetryBudget
from conveyor.backends.base import BreakerRow
from conveyor.worker.breaker import claim_probe, count, probe_verdict, window_counts

POLICY = CircuitBreaker(failure_rate=0.5, min_attempts=4, window=10, cooldown=5, max_cooldown=12)
T0 = 1_800_000_000.0


def closed(now: float = T0) -> BreakerRow:
    return BreakerRow(
        task="t", state="closed", window_started_at=T0, attempts=0, failures=0,
        prev_attempts=0, prev_failures=0, cooldown=0.0, open_until=None, probe_holder=None,
        probe_expires_at=None, changed_at=T0, now=now,
    )


def at(row: BreakerRow, now: float) -> BreakerRow:
    return dataclasses.replace(row, now=now)


def tripped() -> BreakerRow:
    row = closed()
    for _ in range(4):
        row = count(row, POLICY, 1, 1)
    assert row.state == "open" and row.open_until == T0 + 5
    return row


def test_it_stays_closed_until_the_window_holds_enough_attempts() -> None:
    row = count(closed(), POLICY, 3, 3)
    assert row.state == "closed" and (row.attempts, row.failures) == (3, 3)


def test_it_opens_at_the_failure_rate_and_not_below_it() -> None:
    row = count(closed(), POLICY, 5, 2)
    assert row.state == "closed"  # 2 of 5 < 50 %
    row = count(row, POLICY, 1, 1)
    assert row.state == "open"  # 3 of 6


def test_successes_alone_never_open_it() -> None:
    assert count(closed(), POLICY, 100, 0).state == "closed"


def test_failures_older_than_the_window_are_forgotten() -> None:
    row = count(closed(), POLICY, 3, 3)
    row = count(at(row, T0 + 21), POLICY, 1, 1)  # two windows on: nothing carried over
    assert row.state == "closed" and (row.prev_attempts, row.attempts) == (0, 1)


def test_the_previous_window_counts_for_the_part_still_within() -> None:
    row = count(closed(), POLICY, 4, 3)  # 3 of 4
    assert row.state == "open"
    row = count(closed(), POLICY, 3, 3)
    row = at(row, T0 + 15)  # half of the previous window is still within the last 10 s
    assert window_counts(row, POLICY.window) == pytest.approx((1.5, 1.5))
    row = count(row, POLICY, 3, 1)  # 1.5 + 3 attempts, 1.5 + 1 failures: >= 50 %, >= 4
    assert row.state == "open"


def test_an_open_breaker_lets_one_probe_through_once_the_cooldown_is_over() -> None:
    row = tripped()
    assert claim_probe(at(row, T0 + 4.9), "a", ttl=30) == at(row, T0 + 4.9)
    probing = claim_probe(at(row, T0 + 5), "a", ttl=30)
    assert probing.state == "half-open" and probing.probe_holder == "a"
    assert probing.changed_at == T0 + 5
    assert claim_probe(probing, "b", ttl=30).probe_holder == "a"  # one probe at a time


def test_a_probe_claim_expires_so_a_dead_prober_does_not_hold_it_forever() -> None:
    probing = claim_probe(at(tripped(), T0 + 5), "a", ttl=3)
    assert claim_probe(at(probing, T0 + 7.9), "b", ttl=3).probe_holder == "a"
    taken = claim_probe(at(probing, T0 + 8), "b", ttl=3)
    assert taken.probe_holder == "b" and taken.changed_at == probing.changed_at
    # The first prober's late verdict changes nothing: its claim is gone.
    assert probe_verdict(taken, POLICY, "a", False) == taken


def test_a_successful_probe_closes_the_breaker() -> None:
    probing = claim_probe(at(tripped(), T0 + 5), "a", ttl=30)
    row = probe_verdict(at(probing, T0 + 6), POLICY, "a", False)
    assert row.state == "closed" and row.probe_holder is None and row.attempts == 0


def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() -> None:
    row = tripped()
    now = T0
    for expected in (10, 12, 12):
        now += 100
        row = claim_probe(at(row, now), "a", ttl=30)
        row = probe_verdict(row, POLICY, "a", True)
        assert row.state == "open" and row.open_until == now + expected


def test_a_probe_without_a_verdict_lets_the_next_job_probe() -> None:
    probing = claim_probe(at(tripped(), T0 + 5), "a", ttl=30)
    freed = probe_verdict(probing, POLICY, "a", None)  # e.g. it raised RetryAfter
    assert freed.state == "half-open" and freed.probe_holder is None
    assert claim_probe(freed, "b", ttl=30).probe_holder == "b"


def test_late_outcomes_of_attempts_started_before_opening_change_nothing() -> None:
    row = tripped()
    assert count(row, POLICY, 1, 0) == row
    probing = claim_probe(at(row, T0 + 5), "a", ttl=30)
    assert count(probing, POLICY, 1, 0) == probing


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


@pytest.mark.parametrize(
    ("field", "value"),
    [("ratio", -0.1), ("ratio", float("nan")), ("floor", -1), ("floor", 1.5),
     ("window", 0.5), ("window", 7200), ("window", True)],
)
def test_a_bad_retry_budget_fails_when_built_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=field):
        RetryBudget(**{field: value})  # type: ignore[arg-type]


def test_a_retry_budget_that_allows_nothing_is_refused_with_the_way_to_turn_it_off() -> None:
    with pytest.raises(ConfigurationError, match="retry_budget=False"):
        RetryBudget(ratio=0, floor=0)


def test_the_task_decorator_refuses_a_breaker_or_budget_of_the_wrong_type() -> None:
    from conveyor import Conveyor

    app = Conveyor("sqlite:///:memory:")
    with pytest.raises(ConfigurationError, match=r"breaker= must be a conveyor\.CircuitBreaker"):
        app.task(breaker={"failure_rate": 0.5})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"retry_budget= must be a conveyor\.RetryBudget"):
        app.task(retry_budget=0.2)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"retry_budget must be a conveyor\.RetryBudget"):
        Conveyor("sqlite:///:memory:", retry_budget=True)  # type: ignore[arg-type]
