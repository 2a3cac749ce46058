"""The backoff formula and its bounds, checked over generated inputs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor import ConfigurationError, Retry

policies = st.builds(
    Retry,
    base=st.floats(min_value=0, max_value=1e4, allow_nan=False),
    factor=st.floats(min_value=1, max_value=100, allow_nan=False),
    cap=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    jitter=st.sampled_from(["full", "equal", "none"]),
)


@given(policies, st.integers(min_value=1, max_value=10_000), st.integers())
def test_delay_is_between_zero_and_the_capped_ceiling(
    retry: Retry, attempt: int, seed: int
) -> None:
    delay = retry.delay(attempt, random.Random(seed))
    ceiling = retry.ceiling(attempt)
    assert 0 <= delay <= ceiling <= retry.cap
    if retry.jitter == "equal":
        assert delay >= ceiling / 2
    if retry.jitter == "none":
        assert delay == ceiling


@given(policies, st.integers(min_value=1, max_value=200))
def test_ceiling_never_shrinks_with_more_attempts(retry: Retry, attempt: int) -> None:
    assert retry.ceiling(attempt + 1) >= retry.ceiling(attempt)


def test_ceiling_follows_the_documented_formula() -> None:
    retry = Retry(base=1.0, factor=2.0, cap=600.0, jitter="none")
    assert [retry.ceiling(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert retry.ceiling(11) == 600.0  # 1024 capped
    assert retry.ceiling(100_000) == 600.0  # no overflow


def test_full_jitter_spreads_delays_over_the_whole_range() -> None:
    retry = Retry(base=10, factor=1, cap=10)
    rng = random.Random(1)
    draws = [retry.delay(1, rng) for _ in range(2000)]
    assert min(draws) < 1 and max(draws) > 9


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1}, {"factor": 0.5}, {"cap": float("inf")}, {"jitter": "x"}, {"base": float("nan")}],
)
def test_bad_policies_fail_when_built(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Retry(**kwargs)  # type: ignore[arg-type]
