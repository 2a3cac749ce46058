"""conveyor: `@app.task`, `.enqueue()`, `.enqueue_many()`; worker threads."""

from __future__ import annotations

import os
import time

import probe

from conveyor import Conveyor

# unreachable_timeout: on a loaded machine a large batch can wait over the default
# second for the database; here that is slowness to measure, not an outage.
app = Conveyor(os.environ.get("BENCH_CONVEYOR_URL"), poll_interval=1.0, unreachable_timeout=30.0)


@app.task
def noop() -> None:
    probe.start()
    probe.end()


@app.task
def sleep10() -> None:
    probe.start()
    time.sleep(0.01)
    probe.end()


@app.task
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


BULK_CHUNK = 5_000
"""Jobs per enqueue_many call (one transaction each): a backlog of a million is
enqueued in chunks, each well within the app's unreachable_timeout."""


def enqueue_many(kind: str, n: int) -> None:
    for first in range(0, n, BULK_CHUNK):
        TASKS[kind].enqueue_many(() for _ in range(min(BULK_CHUNK, n - first)))


def close() -> None:
    app.close()
