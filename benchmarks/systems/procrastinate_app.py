"""Procrastinate: PostgreSQL (psycopg 3), `task.defer()`, `task.batch_defer()`; async worker."""

from __future__ import annotations

import asyncio
import os
import time

import probe
import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PG_URL", "")),
)


@app.task(name="noop", queue="bench")
async def noop() -> None:
    probe.start()
    probe.end()


@app.task(name="sleep10", queue="bench")
async def sleep10() -> None:
    probe.start()
    await asyncio.sleep(0.01)
    probe.end()


@app.task(name="latency", queue="bench")
async def latency(enqueued_at: float) -> None:
    probe.start(enqueued_at)
    probe.end()


TASKS = {"noop": noop, "sleep": sleep10}
BULK = True
_opened = False


def _open() -> None:
    global _opened
    if not _opened:
        app.open()
        _opened = True


def setup() -> None:
    _open()
    app.schema_manager.apply_schema()


def enqueue_one(kind: str, enqueued_at: float | None = None) -> None:
    _open()
    if kind == "latency":
        latency.defer(enqueued_at=enqueued_at if enqueued_at is not None else time.time())
    else:
        TASKS[kind].defer()


def enqueue_many(kind: str, n: int) -> None:
    _open()
    for start in range(0, n, 1000):
        TASKS[kind].batch_defer(*({} for _ in range(min(1000, n - start))))


def close() -> None:
    if _opened:
        app.close()
