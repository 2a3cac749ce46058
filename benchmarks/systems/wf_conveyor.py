"""conveyor workflows: a 3-job chain and a 100-wide chord of no-op jobs."""

from __future__ import annotations

import os

from conveyor import Conveyor, chain, chord

app = Conveyor(os.environ.get("BENCH_CONVEYOR_URL"), poll_interval=0.1)
DONE = os.environ.get("BENCH_WF_DONE", "/dev/null")


def _done() -> None:
    fd = os.open(DONE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"x\n")
    finally:
        os.close(fd)


@app.task
def link(previous: int | None = None) -> int:
    return (previous or 0) + 1


@app.task
def last(previous: int) -> int:
    _done()
    return previous + 1


@app.task
def leaf(n: int) -> int:
    return n


@app.task
def callback(results: list[int]) -> int:
    _done()
    return len(results)


def setup() -> None:
    app.migrate()


def worker_command(py: str) -> list[str]:
    return [py, "-m", "conveyor", "worker", "wf_conveyor:app", "-c", "8", "--log-level",
            "warning"]


def enqueue_chains(n: int) -> None:
    for _ in range(n):
        app.enqueue_workflow(chain(link.prepare(), link.prepare_partial(),
                                   last.prepare_partial()))


def enqueue_chords(n: int, width: int) -> None:
    for _ in range(n):
        app.enqueue_workflow(chord([leaf.prepare(i) for i in range(width)],
                                   callback.prepare_partial()))


def close() -> None:
    app.close()
