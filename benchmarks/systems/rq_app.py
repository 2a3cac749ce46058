"""RQ: Redis; `Queue.enqueue`, `Queue.enqueue_many` (one pipeline); SimpleWorker (no fork)."""

from __future__ import annotations

import os
import time

import probe
from redis import Redis
from rq import Queue

_redis = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
queue = Queue("bench", connection=_redis)


def noop() -> None:
    probe.start()
    probe.end()


def sleep10() -> None:
    probe.start()
    time.sleep(0.01)
    probe.end()


def latency(enqueued_at: float) -> None:
    probe.start(enqueued_at)
    probe.end()


TASKS = {"noop": noop, "sleep": sleep10}
BULK = True


def setup() -> None:
    pass


def enqueue_one(kind: str, enqueued_at: float | None = None) -> None:
    if kind == "latency":
        queue.enqueue(latency, enqueued_at if enqueued_at is not None else time.time())
    else:
        queue.enqueue(TASKS[kind])


def enqueue_many(kind: str, n: int) -> None:
    fn = TASKS[kind]
    for start in range(0, n, 1000):
        queue.enqueue_many([Queue.prepare_data(fn) for _ in range(min(1000, n - start))])


def close() -> None:
    _redis.close()
