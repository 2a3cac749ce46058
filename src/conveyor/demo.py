"""The demo app behind `conveyor demo`: a few tasks that succeed, retry and die.

    conveyor demo                                   # enqueue a workload and watch it run
    conveyor dlq list --app conveyor.demo:app       # then look around

`app` stores its jobs where ``CONVEYOR_DEMO_URL`` says (default
``sqlite:///conveyor-demo.db``, in the current folder). `create_app(url)`
builds another app with the same tasks, which is what `conveyor demo --db`
uses.

`flaky` and `rate_limited` count their calls in this process's memory, which
is right for the demo's in-process thread pool and nothing else: a real task
that must know its attempt reads it from the job, and keeps its effects
idempotent.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter

from conveyor.app import Conveyor
from conveyor.errors import RetryAfter
from conveyor.retry import Retry

DEMO_URL_ENV = "CONVEYOR_DEMO_URL"
DEFAULT_DEMO_URL = "sqlite:///conveyor-demo.db"

QUICK_RETRY = Retry(base=0.1, factor=2.0, cap=0.5)
"""Short backoff so the demo's retries happen while you watch (real apps wait longer)."""

TASK_NAMES = ("fast", "slow", "flaky", "rate_limited", "poison")
QUEUES = ("default", "slow")
"""The demo's queues; a worker for it serves both (`-q default,slow`)."""

# One cycle of the workload; every task appears in the first five jobs.
_WORKLOAD_CYCLE = (
    "fast", "slow", "flaky", "rate_limited", "poison",
    "fast", "fast", "slow", "fast", "flaky",
    "fast", "fast", "slow", "fast", "rate_limited",
    "fast", "flaky", "fast", "slow", "fast",
)

_calls: Counter[str] = Counter()
_calls_lock = threading.Lock()


def _count_call(key: str) -> int:
    """How many times the job with this key has run so far, this one included."""
    with _calls_lock:
        _calls[key] += 1
        return _calls[key]


def fast(n: int) -> int:
    """Returns at once."""
    return n * n


def slow(seconds: float) -> str:
    """Sleeps a little, like a call to a slow service."""
    time.sleep(seconds)
    return f"slept {seconds:.2f}s"


def flaky(key: str, fail_times: int = 2) -> str:
    """Fails its first `fail_times` attempts (a dependency hiccup), then succeeds."""
    call = _count_call(key)
    if call <= fail_times:
        raise ConnectionError(f"payment gateway timed out (call {call} of {key})")
    return f"succeeded on call {call}"


def rate_limited(key: str) -> str:
    """Gets an HTTP 429 on its first call and asks to come back later (RetryAfter)."""
    call = _count_call(key)
    if call == 1:
        raise RetryAfter(0.2, reason="429 Too Many Requests: Retry-After 0.2s")
    return f"accepted on call {call}"


def poison(order_id: int) -> None:
    """Always fails: bad input no retry can fix. It ends in the dead-letter queue."""
    raise ValueError(f"order {order_id}: cannot parse payload (unexpected token '<' at 0)")


def create_app(url: str | None = None) -> Conveyor:
    """A demo app on `url` (default: $CONVEYOR_DEMO_URL, else sqlite:///conveyor-demo.db)."""
    demo = Conveyor(
        url or os.environ.get(DEMO_URL_ENV) or DEFAULT_DEMO_URL,
        poll_interval=0.05,
        default_retry=QUICK_RETRY,
    )
    demo.task(name="fast")(fast)
    demo.task(name="slow", queue="slow")(slow)
    demo.task(name="flaky", max_attempts=5)(flaky)
    demo.task(name="rate_limited", max_attempts=3)(rate_limited)
    demo.task(name="poison", max_attempts=3, retry=Retry(base=0.05, cap=0.2))(poison)
    return demo


def enqueue_workload(demo: Conveyor, jobs: int = 60, *, seed: int | None = None) -> list[int]:
    """Enqueue `jobs` demo jobs (a fixed mix of every task); returns their ids.

    One transaction per task: all of a task's jobs are stored together or not at all.
    """
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]  # keeps this run's flaky counters apart from earlier runs
    calls: dict[str, list[tuple[object, ...]]] = {name: [] for name in TASK_NAMES}
    for i in range(jobs):
        name = _WORKLOAD_CYCLE[i % len(_WORKLOAD_CYCLE)]
        if name == "fast":
            calls[name].append((i,))
        elif name == "slow":
            calls[name].append((round(rng.uniform(0.2, 0.5), 2),))
        elif name in ("flaky", "rate_limited"):
            calls[name].append((f"{run}-{i}",))
        else:
            calls[name].append((1000 + i,))
    ids: list[int] = []
    for name, items in calls.items():
        if items:
            ids.extend(
                job.id for job in demo.get_task(name).enqueue_many(items) if job.id is not None
            )
    return ids


app = create_app()
"""The demo app, importable as ``conveyor.demo:app`` (it connects on first use only)."""

__all__ = ["DEMO_URL_ENV", "QUEUES", "TASK_NAMES", "app", "create_app", "enqueue_workload"]
