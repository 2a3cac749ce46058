"""The app of the flow-control fleet tests: tasks that call a real TCP dependency.

Configured by environment (imported by each worker process): CONVEYOR_URL,
HISTORY (the history file), DEP_PORT (the dependency's port), COOLDOWN, LEASE,
FAIL_UNTIL (epoch seconds: `flaky` fails before), BUDGET_WINDOW, BUDGET_FLOOR.

History lines, one `write()` each on an O_APPEND descriptor (whole or absent,
in the order they happened across processes): `<time> start <n> <pid>` when an
attempt starts, `<time> ok|fail <n> <pid>` when it ends, and `<time> <event>
<job id> <pid>` for each flow-control event this process published.
"""

from __future__ import annotations

import os
import socket
import time

from conveyor import CircuitBreaker, Conveyor, Retry, RetryBudget
from conveyor.events import EventName, JobEvent

HISTORY = os.environ.get("HISTORY", os.devnull)
_fd = os.open(HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
FLOW_EVENTS = frozenset({
    EventName.BREAKER_OPENED, EventName.BREAKER_HALF_OPEN, EventName.BREAKER_CLOSED,
    EventName.RETRY_DEFERRED,
})
COOLDOWN = float(os.environ.get("COOLDOWN", "1.5"))


def note(what: str, n: int) -> None:
    os.write(_fd, f"{time.time():.6f} {what} {n} {os.getpid()}\n".encode())


def call(n: int) -> None:
    """One request to the dependency: connect, send, read the answer."""
    note("start", n)
    if os.path.exists(HISTORY + ".hang"):
        while True:  # the test SIGKILLs this process
            time.sleep(60)
    try:
        with socket.create_connection(("127.0.0.1", int(os.environ["DEP_PORT"])), 1.0) as conn:
            conn.sendall(b"ping\n")
            if conn.recv(16) != b"pong\n":
                raise ConnectionError("the dependency answered nonsense")
    except OSError:
        note("fail", n)
        raise
    note("ok", n)


def flaky(n: int) -> None:
    note("start", n)
    if time.time() < float(os.environ.get("FAIL_UNTIL", "0")):
        note("fail", n)
        raise ConnectionError("the dependency is down")
    note("ok", n)


def build(url: str | None) -> Conveyor:
    flow_app = Conveyor(url, lease=float(os.environ.get("LEASE", "5")), poll_interval=0.05)
    flow_app.task(
        name="call", max_attempts=1000, retry=Retry(base=0.05, cap=0.2), retry_budget=False,
        breaker=CircuitBreaker(failure_rate=0.5, min_attempts=10, window=10,
                               cooldown=COOLDOWN, max_cooldown=COOLDOWN),
    )(call)
    flow_app.task(
        name="flaky", max_attempts=3, retry=Retry(base=0.05, cap=0.2),
        retry_budget=RetryBudget(ratio=0.2, floor=int(os.environ.get("BUDGET_FLOOR", "4")),
                                 window=float(os.environ.get("BUDGET_WINDOW", "2"))),
    )(flaky)
    return flow_app


app = build(os.environ.get("CONVEYOR_URL"))


def _record(event: JobEvent) -> None:
    note(str(event.name), event.job_id)


app.events.subscribe(_record, wants=lambda name: name in FLOW_EVENTS)
