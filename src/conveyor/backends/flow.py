"""Flow-control limits as the backends store them: row mappings both share, and
when a fetch looks for limited jobs at all (docs/flow-control.md).

A database without limits must not pay for them: a backend runs the limited part
of its fetch only while the last look found a declared limit, and otherwise looks
again once per `RECHECK` seconds (a limit declared by another process is seen
within that time; one declared by this process at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from conveyor.backends.base import KeyWait, LimitState
from conveyor.limits import LimitSpec

RECHECK = 1.0
"""Seconds between two looks for limited jobs while none was found."""
SLOT_RECHECK = 0.02
"""Seconds a worker waits before asking again for a limit bound by its concurrency
(a slot frees when any worker records a completion, which wakes nobody)."""
BUSY_RECHECK = 0.002
"""Seconds a worker waits before asking again when another worker's fetch held a
limit with work here (PostgreSQL's SKIP LOCKED): that fetch commits within its one
statement, and its limits may still have tokens and slots to spare."""
PREFETCH_START_WITHIN = 0.1
"""Seconds after its fetch by which a prefetched job of a rate limit must start; a
worker gives back one that could not (held.py), and the fetch that prefetched it
gave up that long of its limit's refill (job_fetch_limited.sql)."""
UNLIMITED_RECHECK = 0.1
"""Seconds after the fetch of unlimited jobs came back short (the worker's queues had
no more of them) during which limited jobs of a limit with a rate only may fill the
prefetch too, and a fetch whose limited jobs took every free slot skips the
unlimited part. Past it, limited jobs take only free slots again until the unlimited
part has been asked, so unlimited jobs sharing a queue with a limited backlog wait
at most this long for their turn."""


class LimitWatch:
    """Whether this process's next fetch should look for limited jobs, and how long a
    worker left waiting by a limit should wait before it asks again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._present = True  # look at the first fetch
        self._looked_at = float("-inf")
        self._unlimited_dry_at = float("-inf")
        self._has_rate: dict[str, bool] = {}
        self.waiting: float | None = None

    def due(self, now: float) -> bool:
        with self._lock:
            return self._present or now - self._looked_at >= RECHECK

    def saw(
        self, now: float, limits: int, with_work: Sequence[tuple[float | None, bool]], *,
        held_elsewhere: bool = False, rates: Iterable[tuple[str, bool]] = (),
    ) -> None:
        """What the fetch found: how many limits are declared, and for those with
        available jobs here, the seconds until each one's next token (None: no rate) and
        whether it is bounded (counts running jobs or keys' tokens, so its jobs go only
        to free slots). held_elsewhere: another fetch held a limit with work. rates:
        limits seen, and whether each has a rate (a prefetched job of one without a
        rate may start any time).

        Jobs wait for a limit when it is bounded or short of a token; a limit with a
        rate alone and tokens to spare holds nothing back, and the worker fetches (and
        prefetches) as for unlimited jobs."""
        token_waits = [wait for wait, bounded in with_work
                       if bounded or (wait is not None and wait > 0)]
        with self._lock:
            self._looked_at = now
            self._present = limits > 0
            self._has_rate.update(rates)
            if not token_waits and not held_elsewhere:
                self.waiting = None
                return
            if held_elsewhere:
                self.waiting = BUSY_RECHECK
                return
            waits = [SLOT_RECHECK if w is None or w <= 0 else w for w in token_waits]
            self.waiting = min(RECHECK, max(0.005, min(waits)))

    def start_within(self, limit_name: str) -> float | None:
        """`PREFETCH_START_WITHIN` for a prefetched job of a limit with a rate (or one
        not seen yet); None for a limit seen without one, which counts no starts."""
        with self._lock:
            return None if self._has_rate.get(limit_name) is False else PREFETCH_START_WITHIN

    def _unlimited_dry(self, now: float) -> bool:
        return now - self._unlimited_dry_at < UNLIMITED_RECHECK

    def limited_room(self, now: float, start: int, limit: int) -> int:
        """How many limited jobs this fetch may lease: the free slots, or the whole
        fetch (its prefetch too) while no unlimited job was found here lately. Without
        a free slot, only while the last look found no limit holding jobs back: a
        fetch for the prefetch alone would find the limits as full and hold their
        rows from the fetches of workers with free slots."""
        with self._lock:
            if not self._unlimited_dry(now) or (start <= 0 and self.waiting is not None):
                return start
            return limit

    def skip_unlimited(self, now: float, got: int, start: int, limit: int) -> bool:
        """Whether the fetch can stop after its limited part, which leased `got`."""
        with self._lock:
            return got >= limit or (got >= start and self._unlimited_dry(now))

    def prefetch_room(self, now: float, limited: int, room: int, left: int) -> int:
        """After the unlimited part of a fetch: how many more limited jobs to lease for
        the prefetch (0: none). The limited part filled the `room` it was given (free
        slots only, the queues not yet known to hold no unlimited job), or had none to
        fill (no free slot), and the unlimited part left `left` of the fetch unfilled: a
        limit with a rate alone, or with spare key slots, may take it. Without this, a
        worker whose slots are all taken would wait for work while its prefetch could
        hold limited jobs."""
        if left <= 0 or limited < room or (room > 0 and not limited) or not self.due(now):
            return 0
        return self.limited_room(now, 0, left)

    def unlimited_found(self, now: float, got: int, asked: int) -> None:
        """What the unlimited part of a fetch found: short of `asked` means no more."""
        with self._lock:
            self._unlimited_dry_at = now if got < asked else float("-inf")

    def declared(self) -> None:
        """A limit was declared here: look at the next fetch."""
        with self._lock:
            self._present = True


def limit_spec_params(spec: LimitSpec) -> dict[str, Any]:
    return {
        "name": spec.name, "rate": spec.rate, "burst": spec.burst,
        "concurrency": spec.concurrency, "key_rate": spec.key_rate,
        "key_burst": spec.key_burst, "key_concurrency": spec.key_concurrency,
        "queue": spec.queue,
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def limit_state_from_row(row: Any) -> LimitState:
    return LimitState(
        name=row["name"], rate=_float(row["rate"]), burst=_float(row["burst"]),
        concurrency=_int(row["concurrency"]), key_rate=_float(row["key_rate"]),
        key_burst=_float(row["key_burst"]), key_concurrency=_int(row["key_concurrency"]),
        queue=row["queue"], overridden=bool(row["overridden"]), tokens=_float(row["tokens"]),
        running=int(row["running"]), waiting=int(row["waiting"]),
        paused_for=float(row["paused_for"] or 0.0), paused_reason=row["paused_reason"],
    )


def key_wait_from_row(row: Any) -> KeyWait:
    return KeyWait(
        running=int(row["running"]), ahead_in_limit=int(row["ahead_in_limit"]),
        ahead_in_key=int(row["ahead_in_key"]),
        key_paused_for=float(row["key_paused_for"] or 0.0),
    )
