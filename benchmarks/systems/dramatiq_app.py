"""Dramatiq: Redis broker, `actor.send()`; worker processes x threads."""

from __future__ import annotations

import os
import time

import dramatiq
import probe
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=3)
def noop() -> None:
    probe.start()
    probe.end()


@dramatiq.actor(queue_name="bench", max_retries=3)
def sleep10() -> None:
    probe.start()
    time.sleep(0.01)
    probe.end()


@dramatiq.actor(queue_name="bench", max_retries=3)
def latency(enqueued_at: float) -> None:
    probe.start(enqueued_at)
    probe.end()


TASKS = {"noop": noop, "sleep": sleep10}
BULK = False  # no bulk API: group() sends one message per actor call


def setup() -> None:
    pass


def enqueue_one(kind: str, enqueued_at: float | None = None) -> None:
    if kind == "latency":
        latency.send(enqueued_at if enqueued_at is not None else time.time())
    else:
        TASKS[kind].send()


def enqueue_many(kind: str, n: int) -> None:
    raise NotImplementedError


def close() -> None:
    broker.close()
