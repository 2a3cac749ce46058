"""conveyor: `@app.task`, `.enqueue()`, `.enqueue_many()`; worker threads."""

from __future__ import annotations

import os
import time

import probe

from conveyor import CircuitBreaker, Conveyor

FLOW = os.environ.get("BENCH_CONVEYOR_FLOW", "default")
"""default: the retry budget on (as shipped); off: no budget, so no attempt middleware
(the worker's path before shared breakers and budgets); breaker: the budget and a
closed shared circuit breaker on every task; rate: a rate limit far above the drain
rate; keys: 1,000 active keys, at most 2 running per key (docs/performance.md)."""

# unreachable_timeout: the peers wait for their database without a bound; on a machine
# shared with other work, a cold connection or a large batch can take longer than the 1 s
# default: here that is slowness to measure, not an outage.
app = Conveyor(os.environ.get("BENCH_CONVEYOR_URL"), poll_interval=1.0,
               unreachable_timeout=30.0,
               **({"retry_budget": None} if FLOW == "off" else {}))
_flow: dict[str, object] = {"breaker": CircuitBreaker()} if FLOW == "breaker" else {}
KEYS = 1_000
if FLOW == "rate":
    app.limit("bench", rate="1000000/s")
elif FLOW == "keys":
    app.limit("bench", key_concurrency=2)
if FLOW in ("rate", "keys"):
    _flow = {"limit": "bench"}


@app.task(**_flow)
def noop() -> None:
    probe.start()
    probe.end()


@app.task(**_flow)
def sleep10() -> None:
    probe.start()
    time.sleep(0.01)
    probe.end()


@app.task(**_flow)
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
    task = TASKS[kind]
    if FLOW == "keys":
        keyed = [task.using(limit_key=f"tenant:{k}") for k in range(KEYS)]
        for first in range(0, n, BULK_CHUNK):
            app.enqueue_jobs([keyed[i % KEYS].prepare()
                              for i in range(first, min(n, first + BULK_CHUNK))])
        return
    for first in range(0, n, BULK_CHUNK):
        task.enqueue_many(() for _ in range(min(BULK_CHUNK, n - first)))


def close() -> None:
    app.close()
