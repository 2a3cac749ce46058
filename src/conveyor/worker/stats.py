"""Counters of one worker run (read by `drain` and tests)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class WorkerStats:
    fetched: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0
    """Completions refused because the lease had moved on (fenced)."""
    released: int = 0
    """Jobs given back at shutdown or because their lease deadline had passed: running
    and prefetched ones alike, their attempt not counted."""
    deferred: int = 0
    """Jobs given back for later by a middleware (the open circuit breaker)."""
    rescued: int = 0
    maintenance_passes: int = 0
    """Maintenance passes (rescue, cron, prune) this worker ran as the elected leader."""
    vacuums: int = 0
    """Vacuums of the job table this worker ran as the leader (PostgreSQL)."""


__all__ = ["WorkerStats"]
