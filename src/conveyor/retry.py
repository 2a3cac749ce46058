"""Retry policy: how long to wait before the next attempt.

The delay before attempt ``n + 1`` (after attempt ``n`` failed, ``n >= 1``) is::

    ceiling = min(cap, base * factor ** (n - 1))
    full    : uniform(0, ceiling)                 (the default: spreads a retry storm)
    equal   : ceiling / 2 + uniform(0, ceiling / 2)
    none    : ceiling

All values are seconds (floats). A task that raises ``RetryAfter(s)`` replaces
this computation with exactly ``s`` for that attempt.

``Retry`` is the default ``RetryPolicy``; any object with a
``delay(attempt) -> float`` method is one too (``@app.task(retry=...)``,
``Conveyor(default_retry=...)``), e.g. a fixed schedule::

    class Schedule:
        def delay(self, attempt: int) -> float:
            return (5, 60, 600)[min(attempt, 3) - 1]

A delay that is not a finite number >= 0 counts as 0 (retry at once).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from conveyor.errors import ConfigurationError

Jitter = Literal["full", "equal", "none"]
_JITTERS: frozenset[str] = frozenset({"full", "equal", "none"})


@runtime_checkable
class RetryPolicy(Protocol):
    """How long a job waits after a failed attempt before the next one."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based) before the next one."""
        ...


@dataclass(frozen=True, slots=True)
class Retry:
    """Exponential backoff with jitter. Validated when built, so a bad policy fails at import."""

    base: float = 1.0
    """Ceiling of the first retry's delay, in seconds."""
    factor: float = 2.0
    """Growth of the ceiling per attempt."""
    cap: float = 600.0
    """Largest ceiling, in seconds."""
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        for name in ("base", "factor", "cap"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigurationError(
                    f"Retry({name}=...) must be a finite number of seconds >= 0, got {value!r}"
                )
        if self.factor < 1:
            raise ConfigurationError(f"Retry(factor=...) must be >= 1, got {self.factor!r}")
        if self.jitter not in _JITTERS:
            raise ConfigurationError(
                f"Retry(jitter=...) must be one of 'full', 'equal', 'none', got {self.jitter!r}"
            )

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay after failed attempt number `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        # factor ** (attempt - 1) overflows to inf for large attempts; the cap bounds it.
        try:
            grown = self.base * self.factor ** (attempt - 1)
        except OverflowError:
            return self.cap
        return min(self.cap, grown)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` before the next one."""
        ceiling = self.ceiling(attempt)
        draw = (rng or _rng).random()
        if self.jitter == "full":
            return ceiling * draw
        if self.jitter == "equal":
            return ceiling / 2 + (ceiling / 2) * draw
        return ceiling


_rng = random.Random()

DEFAULT_RETRY = Retry()


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """Stop spending a task's attempts while what it depends on is down.

    Each worker process watches the task's recent attempts. When, within the
    last `window` seconds, at least `min_attempts` ran and at least
    `failure_rate` of them failed with a retryable error, the circuit opens:
    for `cooldown` seconds the worker does not run the task, and the jobs it
    fetches go back to `scheduled` for when the circuit may close, their
    attempt not counted. Then one job runs as a probe: success closes the
    circuit, failure opens it again for twice as long (up to `max_cooldown`).

    Only failures the retry policy would retry count: `RetryAfter`, `Discard`
    and errors in `dont_retry` say nothing about the dependency's health.
    """

    failure_rate: float = 0.5
    """Fraction of failed attempts in the window that opens the circuit (0 < rate <= 1)."""
    min_attempts: int = 10
    """Attempts the window must hold before the rate means anything."""
    window: float = 60.0
    """Seconds of recent attempts the rate is computed over."""
    cooldown: float = 30.0
    """Seconds the circuit stays open before a probe."""
    max_cooldown: float = 600.0
    """Longest cooldown after repeated failed probes."""

    def __post_init__(self) -> None:
        rate = self.failure_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise ConfigurationError(
                f"CircuitBreaker(failure_rate=...) must be in (0, 1], got {rate!r}"
            )
        attempts = self.min_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError(
                f"CircuitBreaker(min_attempts=...) must be an int >= 1, got {attempts!r}"
            )
        for name in ("window", "cooldown", "max_cooldown"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigurationError(
                    f"CircuitBreaker({name}=...) must be a finite number of seconds > 0, "
                    f"got {value!r}"
                )
        if self.max_cooldown < self.cooldown:
            raise ConfigurationError(
                f"CircuitBreaker(max_cooldown={self.max_cooldown!r}) must be >= "
                f"cooldown ({self.cooldown!r})"
            )


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Retries may be at most `ratio` of a task's first attempts, plus `floor`, over the
    last `window` seconds, counted across the whole fleet in the database.

    On by default (`DEFAULT_RETRY_BUDGET`: 20 % plus 100 retries per 10 s window, after
    Finagle's RetryBudget: 20 % and 10 retries a second over 10 s). A retry past the
    budget is deferred, not failed: the job goes back to `scheduled` for a while, its
    attempt not counted, so the budget never sends a job to the dead-letter queue.
    Set per task (`@app.task(retry_budget=...)`, `False` turns it off for the task) or
    per app (`Conveyor(retry_budget=...)`, `None` turns it off).
    """

    ratio: float = 0.2
    """Retries allowed per first attempt within the window (0 <= ratio)."""
    floor: int = 100
    """Retries always allowed within a window, whatever the first attempts."""
    window: float = 10.0
    """Seconds the counts slide over (1 to 3600)."""

    def __post_init__(self) -> None:
        ratio = self.ratio
        if (
            isinstance(ratio, bool) or not isinstance(ratio, int | float)
            or not math.isfinite(ratio) or ratio < 0
        ):
            raise ConfigurationError(
                f"RetryBudget(ratio=...) must be a finite number >= 0 (0.2 is 20 %), "
                f"got {ratio!r}"
            )
        floor = self.floor
        if isinstance(floor, bool) or not isinstance(floor, int) or floor < 0:
            raise ConfigurationError(
                f"RetryBudget(floor=...) must be an int >= 0 (retries per window), got {floor!r}"
            )
        window = self.window
        if (
            isinstance(window, bool) or not isinstance(window, int | float)
            or not math.isfinite(window) or not 1 <= window <= 3600
        ):
            raise ConfigurationError(
                f"RetryBudget(window=...) must be seconds from 1 to 3600, got {window!r}"
            )
        if ratio == 0 and floor == 0:
            raise ConfigurationError(
                "RetryBudget(ratio=0, floor=0) would never retry: give a ratio or a floor, "
                "or turn the budget off (retry_budget=False on the task, None on the app)"
            )


DEFAULT_RETRY_BUDGET = RetryBudget()
