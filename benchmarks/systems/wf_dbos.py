"""DBOS Transact: workflows of steps enqueued on a DBOS queue, on the local PostgreSQL.
A chain is one workflow of three steps; a chord is a workflow that enqueues one
workflow (of one step) per member on the queue, waits for their results, then runs
the callback step."""

from __future__ import annotations

import os
import sys
import time

from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions

URL = os.environ.get("BENCH_DBOS_URL", "")
DONE = os.environ.get("BENCH_WF_DONE", "/dev/null")
POLL = 0.1
"""Seconds between queue polls (conveyor's workers poll every 0.1 s here too)."""


def _start() -> None:
    DBOS(config=_config())
    DBOS.launch()  # queues are registered in the system database, once it is up
    DBOS.register_queue("wfbench", worker_concurrency=8, polling_interval_sec=POLL)
    # A chord's own workflow waits for its members: on a queue of its own, so waiting
    # chords never take the slots their members need.
    DBOS.register_queue("wfbench-chords", worker_concurrency=8, polling_interval_sec=POLL)


def _done() -> None:
    fd = os.open(DONE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"x\n")
    finally:
        os.close(fd)


@DBOS.step()
def link(previous: int | None = None) -> int:
    return (previous or 0) + 1


@DBOS.step()
def last(previous: int) -> int:
    _done()
    return previous + 1


@DBOS.workflow()
def chain3() -> int:
    return last(link(link()))


@DBOS.step()
def leaf_step(n: int) -> int:
    return n


@DBOS.workflow()
def leaf(n: int) -> int:
    return leaf_step(n)


@DBOS.step()
def callback(results: list[int]) -> int:
    _done()
    return len(results)


@DBOS.workflow()
def chord_wf(width: int) -> int:
    queue = DBOS.retrieve_queue("wfbench")
    assert queue is not None
    handles = [queue.enqueue(leaf, i) for i in range(width)]
    return callback([h.get_result() for h in handles])


_client: DBOSClient | None = None


def _config() -> DBOSConfig:
    return {"name": "wfbench", "system_database_url": URL, "log_level": "WARNING",
            "use_listen_notify": True}


def setup() -> None:
    global _client
    _start()  # creates the system tables
    DBOS.destroy()
    _client = DBOSClient(system_database_url=URL)


def worker_command(py: str) -> list[str]:
    return [py, "wf_dbos.py", "worker"]


def enqueue_chains(n: int) -> None:
    assert _client is not None
    options: EnqueueOptions = {"queue_name": "wfbench", "workflow_name": "chain3"}
    for _ in range(n):
        _client.enqueue(options)


def enqueue_chords(n: int, width: int) -> None:
    assert _client is not None
    options: EnqueueOptions = {"queue_name": "wfbench-chords", "workflow_name": "chord_wf"}
    for _ in range(n):
        _client.enqueue(options, width)


def close() -> None:
    if _client is not None:
        _client.destroy()


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    _start()
    while True:
        time.sleep(3600)
