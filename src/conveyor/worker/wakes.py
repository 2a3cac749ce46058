"""When jobs this worker gave back for a while come due again.

A job given back to wait (`ctx.sleep`, a deferral) is `scheduled`: its coming due
notifies nobody, so an idle worker would see it only at its next poll, up to a poll
interval late. The worker remembers when the waits it gave back end, and an idle
worker fetches then instead of sleeping a whole poll interval.
"""

from __future__ import annotations

import heapq
import threading
import time

MAX_WAKES = 10_000
"""Most wake times remembered; past it a wait is seen at the next poll (late by at most
one poll interval, the general promise)."""
MARGIN = 0.005
"""Seconds after the due time to fetch, so the database's clock has passed it too."""


class Wakes:
    """Due times (time.monotonic()) of jobs this worker gave back; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: list[float] = []

    def add(self, delay: float) -> None:
        """A job given back `delay` seconds from now (call after the write committed)."""
        if delay <= 0:
            return
        with self._lock:
            if len(self._due) < MAX_WAKES:
                heapq.heappush(self._due, time.monotonic() + delay + MARGIN)

    def wait(self, longest: float) -> float:
        """Seconds an idle worker may wait before fetching: `longest`, or less when a job
        it gave back comes due sooner."""
        now = time.monotonic()
        with self._lock:
            due = self._due
            while due and due[0] <= now:
                heapq.heappop(due)
            if not due:
                return longest
            return min(longest, due[0] - now)


__all__ = ["MAX_WAKES", "Wakes"]
