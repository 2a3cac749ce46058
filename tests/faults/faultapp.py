"""The app every fault test runs: tasks that write their history as they go.

Configured by environment (it is imported by worker processes and their
children): CONVEYOR_URL, HISTORY (the history file), LEASE, POLL.

Each execution appends `start`, `effect` and `end` lines to the history with
one `write()` on an O_APPEND descriptor, so a line is whole or absent even
when the process is SIGKILLed, and lines from every process interleave in
the order they happened. Every task returns its execution's token, so the
checker can tell which execution's completion the database kept.
"""

from __future__ import annotations

import ctypes
import os
import sqlite3
import time
import uuid

from conveyor import Conveyor

HISTORY = os.environ.get("HISTORY", os.devnull)
_fd = os.open(HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_leaked: list[bytearray] = []


def note(event: str, n: int, token: str) -> None:
    os.write(_fd, f"{time.time():.6f} {event} {n} {token} {os.getpid()}\n".encode())


def begin(n: int) -> str:
    token = uuid.uuid4().hex[:12]
    note("start", n, token)
    return token


def work(n: int, seconds: float = 0.01, payload: str = "") -> str:
    token = begin(n)
    time.sleep(seconds)
    note("effect", n, token)
    note("end", n, token)
    return token


def hang(n: int) -> str:
    begin(n)
    while True:
        time.sleep(60)


def crash(n: int, how: str) -> str:
    begin(n)
    if how == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    os._exit(3)


def leak(n: int, megabytes: int) -> str:
    token = begin(n)
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):  # touch every page so it counts in RSS
        block[i] = 1
    _leaked.append(block)
    note("effect", n, token)
    note("end", n, token)
    return token


def charge(n: int, order_key: str, effects: str, seconds: float = 0.0) -> str:
    """An effect made once per order key, however often the job runs."""
    token = begin(n)
    time.sleep(seconds)
    with sqlite3.connect(effects, timeout=30) as db:
        db.execute("CREATE TABLE IF NOT EXISTS charges (order_key TEXT PRIMARY KEY, token TEXT)")
        db.execute("INSERT OR IGNORE INTO charges VALUES (?, ?)", (order_key, token))
    note("effect", n, token)
    note("end", n, token)
    return token


def build(url: str | None = None, **settings: float) -> Conveyor:
    """The fault app on `url`; the test process builds one to enqueue with."""
    settings.setdefault("lease", float(os.environ.get("LEASE", "2")))
    settings.setdefault("poll_interval", float(os.environ.get("POLL", "0.05")))
    settings.setdefault("connect_timeout", float(os.environ.get("CONNECT_TIMEOUT", "2")))
    fault_app = Conveyor(url, **settings)
    fault_app.task(name="work")(work)
    fault_app.task(name="hang", timeout=float(os.environ.get("HANG_TIMEOUT", "1.0")),
                   max_attempts=2)(hang)
    fault_app.task(name="crash", max_attempts=2)(crash)
    fault_app.task(name="leak")(leak)
    fault_app.task(name="charge")(charge)
    # Flow control (docs/flow-control.md): at most 2 running per key; 50 starts/s.
    fault_app.limit("per_key", key_concurrency=2)
    fault_app.limit("rated", rate="50/s")
    fault_app.task(name="keyed_work", limit="per_key")(work)
    fault_app.task(name="rated_work", limit="rated")(work)
    return fault_app


app = build(os.environ.get("CONVEYOR_URL"))
