"""`Settings`: the app-wide values the services read, frozen (core).

`Conveyor(...)` validates its keyword arguments and keeps them as attributes;
`app.settings` hands them over as one frozen value, so a service (the worker,
the read model, the alert evaluator) receives the few numbers it reads instead
of the whole app.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.retry import DEFAULT_RETRY, RetryPolicy


@dataclass(frozen=True, slots=True)
class Settings:
    lease: float = 30.0
    """Seconds a fetched job stays leased to its worker without a heartbeat."""
    poll_interval: float = 1.0
    """Seconds between two fetches of an idle worker (and between heartbeats)."""
    default_queue: str = "default"
    default_priority: int = 5
    default_max_attempts: int = 5
    default_retry: RetryPolicy = DEFAULT_RETRY
    idempotency_window: float = 86400.0
    """Seconds an idempotency key keeps returning the job it first made."""
    retention: float = 7 * 86400.0
    """Seconds finished jobs are kept before they are pruned."""
    connect_timeout: float = 5.0

    @property
    def alive_within(self) -> float:
        """A worker counts as alive if it sent a heartbeat this recently (2 leases, >= 60s)."""
        return max(60.0, 2 * self.lease)


__all__ = ["Settings"]
