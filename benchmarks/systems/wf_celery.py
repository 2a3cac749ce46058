"""Celery's canvas: chain and chord over Redis (broker and result backend, which a
chord needs); thread pool workers."""

from __future__ import annotations

import os

from celery import Celery, chain, chord

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
app = Celery("wfbench", broker=REDIS, backend=REDIS)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    task_default_queue="wfbench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=600,
)
DONE = os.environ.get("BENCH_WF_DONE", "/dev/null")


def _done() -> None:
    fd = os.open(DONE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"x\n")
    finally:
        os.close(fd)


@app.task(name="link")
def link(previous: int | None = None) -> int:
    return (previous or 0) + 1


@app.task(name="last")
def last(previous: int) -> int:
    _done()
    return previous + 1


@app.task(name="leaf")
def leaf(n: int) -> int:
    return n


@app.task(name="callback")
def callback(results: list[int]) -> int:
    _done()
    return len(results)


def setup() -> None:
    pass


def worker_command(py: str) -> list[str]:
    return [py, "-m", "celery", "-A", "wf_celery", "worker", "-P", "threads", "-c", "8",
            "-Q", "wfbench", "--without-heartbeat", "--without-gossip", "--without-mingle",
            "-l", "warning"]


def enqueue_chains(n: int) -> None:
    for _ in range(n):
        chain(link.s(), link.s(), last.s()).apply_async()


def enqueue_chords(n: int, width: int) -> None:
    for _ in range(n):
        chord([leaf.s(i) for i in range(width)], callback.s()).apply_async()


def close() -> None:
    pass
