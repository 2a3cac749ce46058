"""conveyor: `@app.task`, `.enqueue()`, `.enqueue_many()`; worker threads."""

from __future__ import annotations

import os
import time

import probe

from conveyor import Conveyor

# unreachable_timeout: on a loaded machine an enqueue may wait over 1 s for a busy database.
app = Conveyor(os.environ.get("BENCH_CONVEYOR_URL"), poll_interval=1.0, unreachable_timeout=30.0)

FLOW = os.environ.get("BENCH_CONVEYOR_FLOW", "")
"""'' (no limit), 'rate' (a rate limit far above the drain rate) or 'keys' (1,000
active keys, at most 2 running per key): docs/performance.md explains the bounds."""
KEYS = 1_000
if FLOW == "rate":
    app.limit("bench", rate="1000000/s")
elif FLOW == "keys":
    app.limit("bench", key_concurrency=2)
LIMIT = "bench" if FLOW else None


@app.task(limit=LIMIT)
def noop() -> None:
    probe.start()
    probe.end()


@app.task(limit=LIMIT)
def sleep10() -> None:
    probe.start()
    time.sleep(0.01)
    probe.end()


@app.task(limit=LIMIT)
def latency(enqueued_at: float) -> None:
    probe.start(enqueued_at)
    probe.end()


TASKS = {"noop": noop, "sleep": sleep10}
BULK = True


def setup() -> None:
    app.migrate()


def enqueue_one(kind: str, enqueued_at: float | None = None) -> None:
    if kind == "latency":
        latency.enqueue(enqueued_at if enqueued_at is not None else time.time())
    else:
        TASKS[kind].enqueue()


def enqueue_many(kind: str, n: int) -> None:
    task = TASKS[kind]
    if FLOW == "keys":
        keyed = [task.using(limit_key=f"tenant:{k}") for k in range(KEYS)]
        app.enqueue_jobs([keyed[i % KEYS].prepare() for i in range(n)])
        return
    task.enqueue_many(() for _ in range(n))


def close() -> None:
    app.close()
