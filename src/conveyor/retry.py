"""Retry policy: how long to wait before the next attempt.

The delay before attempt ``n + 1`` (after attempt ``n`` failed, ``n >= 1``) is::

    ceiling = min(cap, base * factor ** (n - 1))
    full    : uniform(0, ceiling)                 (the default: spreads a retry storm)
    equal   : ceiling / 2 + uniform(0, ceiling / 2)
    none    : ceiling

All values are seconds (floats). A task that raises ``RetryAfter(s)`` replaces
this computation with exactly ``s`` for that attempt.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from conveyor.errors import ConfigurationError

Jitter = Literal["full", "equal", "none"]
_JITTERS: frozenset[str] = frozenset({"full", "equal", "none"})


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
