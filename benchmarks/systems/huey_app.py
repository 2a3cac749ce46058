"""Huey: SQLite storage (fsync on, WAL) or Redis, chosen by BENCH_HUEY_STORAGE."""

from __future__ import annotations

import os
import time

import probe
from huey import RedisHuey, SqliteHuey

if os.environ.get("BENCH_HUEY_STORAGE", "sqlite") == "redis":
    huey = RedisHuey(
        "bench", url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        results=False,
    )
else:
    # fsync=True is synchronous=FULL: the same durability conveyor's SQLite gives.
    huey = SqliteHuey(
        "bench", filename=os.environ["BENCH_SQLITE_PATH"], fsync=True, journal_mode="wal",
        results=False,
    )


@huey.task()
def noop() -> None:
    probe.start()
    probe.end()


@huey.task()
def sleep10() -> None:
    probe.start()
    time.sleep(0.01)
    probe.end()


@huey.task()
def latency(enqueued_at: float) -> None:
    probe.start(enqueued_at)
    probe.end()


TASKS = {"noop": noop, "sleep": sleep10}
BULK = False  # no bulk enqueue API


def setup() -> None:
    pass


def enqueue_one(kind: str, enqueued_at: float | None = None) -> None:
    if kind == "latency":
        latency(enqueued_at if enqueued_at is not None else time.time())
    else:
        TASKS[kind]()


def enqueue_many(kind: str, n: int) -> None:
    raise NotImplementedError


def close() -> None:
    pass
