"""The app the flow-control tests run in real worker processes.

Configured by environment: CONVEYOR_URL, HISTORY (a file each execution appends
`<time> start|end <n> <key> <pid>` lines to, one write() each, O_APPEND, so lines
from every process interleave whole and in order), LEASE.
"""

from __future__ import annotations

import os
import time

from conveyor import Conveyor

HISTORY = os.environ.get("HISTORY", os.devnull)
_fd = os.open(HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def note(event: str, n: int, key: str) -> None:
    os.write(_fd, f"{time.time():.6f} {event} {n} {key or '-'} {os.getpid()}\n".encode())


def build(url: str | None = None) -> Conveyor:
    """The app on `url` (default: $CONVEYOR_URL): the workers' and the test's."""
    app = Conveyor(url, lease=float(os.environ.get("LEASE", "5")), poll_interval=0.05)
    app.limit("rated", rate="50/s")  # 50 starts per second, burst 50 (one second's worth)
    app.limit("tenants", key_concurrency=2)  # at most 2 running per key (per tenant)
    app.limit("fair")  # no bound: keys only take turns

    @app.task(limit="rated")
    def rated(n: int) -> None:
        note("start", n, "")
        note("end", n, "")

    @app.task(limit="tenants")
    def tenant(n: int, key: str, seconds: float) -> None:
        note("start", n, key)
        time.sleep(seconds)
        note("end", n, key)

    @app.task(limit="fair")
    def fair(n: int, key: str) -> None:
        note("start", n, key)
        note("end", n, key)

    @app.task(limit="tenants")
    def paused(n: int, key: str, pause: float) -> None:
        """Says "slow down" for its key, once (its first attempt)."""
        note("start", n, key)
        if pause:
            from conveyor import RetryAfter

            raise RetryAfter(pause, "429 Too Many Requests", limit="tenants", key=key)
        note("end", n, key)

    return app


app = build()
