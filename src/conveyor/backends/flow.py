"""Flow-control limits as the backends store them: row mappings both share, and
when a fetch looks for limited jobs at all (docs/flow-control.md).

A database without limits must not pay for them: a backend runs the limited part
of its fetch only while the last look found a declared limit, and otherwise looks
again once per `RECHECK` seconds (a limit declared by another process is seen
within that time; one declared by this process at once).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from conveyor.backends.base import KeyWait, LimitState
from conveyor.limits import LimitSpec

RECHECK = 1.0
"""Seconds between two looks for limited jobs while none was found."""
SLOT_RECHECK = 0.02
"""Seconds a worker waits before asking again for a limit bound by its concurrency
(a slot frees when any worker records a completion, which wakes nobody)."""
BUSY_RECHECK = 0.002
"""Seconds a worker waits before asking again when another worker's fetch held every
limit with work here (PostgreSQL's SKIP LOCKED): that fetch commits within a round
trip or two, and its limits may still have tokens and slots to spare."""


class LimitWatch:
    """Whether this process's next fetch should look for limited jobs, and how long a
    worker left waiting by a limit should wait before it asks again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._present = True  # look at the first fetch
        self._looked_at = float("-inf")
        self.waiting: float | None = None

    def due(self, now: float) -> bool:
        with self._lock:
            return self._present or now - self._looked_at >= RECHECK

    def saw(
        self, now: float, limits: int, token_waits: Sequence[float | None], *,
        held_elsewhere: bool = False,
    ) -> None:
        """What the fetch found: how many limits are declared, and for those with
        available jobs here, the seconds until each one's next token (None: not bound
        by its rate now). held_elsewhere: another fetch held the limits with work."""
        with self._lock:
            self._looked_at = now
            self._present = limits > 0
            if not token_waits:
                self.waiting = None
                return
            waits = [SLOT_RECHECK if w is None or w <= 0 else w for w in token_waits]
            self.waiting = min(RECHECK, max(0.005, min(waits)))
            if held_elsewhere:
                self.waiting = BUSY_RECHECK

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
