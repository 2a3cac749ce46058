"""Time, injected.

Nothing in conveyor calls `time.time()` directly for a job decision: the SQLite
backend reads its `Clock` (on one host the process clock *is* the database's
clock), and the PostgreSQL backend asks the database. Tests hand the SQLite
backend a `ManualClock` and move time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from conveyor.errors import InvalidOptionError


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to. Thread-safe."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float | timedelta) -> None:
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        with self._lock:
            self._now += step


MAX_AHEAD = 100 * 365.25 * 86_400.0
"""The furthest in the future (seconds) a job may be scheduled: a delay or a run_at
beyond it is refused at enqueue, alike on every backend."""

EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
"""The range of times a job row can hold and Python can show; a stored time outside it
(written before the bounds above, or by hand) reads as the nearer end."""


def to_datetime(epoch_seconds: float) -> datetime:
    """An aware UTC datetime; a time outside what `datetime` holds reads as `EARLIEST`
    or `LATEST` instead of raising (a stored row must never break a read)."""
    try:
        return datetime.fromtimestamp(epoch_seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return LATEST if epoch_seconds > 0 else EARLIEST


def format_duration(seconds: float | None) -> str:
    """A short human duration: 850ms, 12s, 3m 05s, 2h 10m, 4d 3h; '-' for None.

    The one formatter the CLI and the dashboard share (days from 24 hours on)."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
def check_run_at(epoch_seconds: float) -> None:
    """Refuse a run_at outside `EARLIEST`..`LATEST`: a fixed range, so the HTTP API's
    document can state it exactly (a bound relative to now could not be)."""
    if not EARLIEST.timestamp() <= epoch_seconds <= LATEST.timestamp():
        raise InvalidOptionError(
            f"run_at must fall between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}, got "
            f"{to_datetime(epoch_seconds).isoformat()} ({epoch_seconds!r} s since the epoch)"
        )
