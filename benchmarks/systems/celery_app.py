"""Celery: Redis broker, acks late, no result backend; thread pool workers."""

from __future__ import annotations

import os
import time

import probe
from celery import Celery

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    result_backend=None,
    worker_prefetch_multiplier=4,
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop() -> None:
    probe.start()
    probe.end()


@app.task(name="sleep10")
def sleep10() -> None:
    probe.start()
    time.sleep(0.01)
    probe.end()


@app.task(name="latency")
def latency(enqueued_at: float) -> None:
    probe.start(enqueued_at)
    probe.end()


TASKS = {"noop": noop, "sleep": sleep10}
BULK = False  # no bulk publish API: group() publishes one message per task


def setup() -> None:
    pass


def enqueue_one(kind: str, enqueued_at: float | None = None) -> None:
    if kind == "latency":
        latency.delay(enqueued_at if enqueued_at is not None else time.time())
    else:
        TASKS[kind].delay()


def enqueue_many(kind: str, n: int) -> None:
    raise NotImplementedError


def close() -> None:
    pass
