"""PgQueuer: PostgreSQL (asyncpg), `Queries.enqueue` (lists = one bulk insert); async worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import AsyncIterator

import asyncpg
import probe
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

DSN = os.environ.get("BENCH_PG_URL", "")


@contextlib.asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """Worker factory for `pgq run systems.pgqueuer_app:main`."""
    connection = await asyncpg.connect(DSN)
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        probe.start()
        probe.end()

    @pgq.entrypoint("sleep10")
    async def sleep10(job: Job) -> None:
        probe.start()
        await asyncio.sleep(0.01)
        probe.end()

    @pgq.entrypoint("latency")
    async def latency(job: Job) -> None:
        assert job.payload is not None
        probe.start(struct.unpack("!d", job.payload)[0])
        probe.end()

    try:
        yield pgq
    finally:
        await connection.close()


NAMES = {"noop": "noop", "sleep": "sleep10", "latency": "latency"}
BULK = True
_loop = asyncio.new_event_loop()
_queries: Queries | None = None


def _q() -> Queries:
    global _queries
    if _queries is None:
        connection = _loop.run_until_complete(asyncpg.connect(DSN))
        _queries = Queries(AsyncpgDriver(connection))
    return _queries


def setup() -> None:
    pass  # `pgq install` is run by the runner


def enqueue_one(kind: str, enqueued_at: float | None = None) -> None:
    payload = None
    if kind == "latency":
        payload = struct.pack("!d", enqueued_at if enqueued_at is not None else time.time())
    _loop.run_until_complete(_q().enqueue(NAMES[kind], payload))


def enqueue_many(kind: str, n: int) -> None:
    q = _q()
    for start in range(0, n, 5000):
        size = min(5000, n - start)
        _loop.run_until_complete(q.enqueue([NAMES[kind]] * size, [None] * size, [0] * size))


def close() -> None:
    pass


if __name__ == "__main__":
    # What `pgq run systems.pgqueuer_app:main --max-concurrent-tasks N` does; called
    # directly because that command's log-level handling fails in this release.
    import sys

    import pgqueuer

    slots = int(sys.argv[1])
    if slots:
        # PgQueuer requires max_concurrent_tasks >= 2 x batch_size.
        asyncio.run(pgqueuer.run(main, max_concurrent_tasks=slots, batch_size=max(1, slots // 2)))
    else:  # its defaults
        asyncio.run(pgqueuer.run(main))
