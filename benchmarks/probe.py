"""What every benchmarked task calls: when it started and finished, seen from inside.

Each worker process keeps three numbers (jobs finished, first start, last finish)
and, for latency jobs, the delay between enqueue and start. A daemon thread
writes them to ``$BENCH_PROBE_DIR/<pid>.json`` every 20 ms (atomically, via
rename), so the runner reads progress without adding a round trip to any job.
The cost inside the job is two ``time.time()`` calls and a lock.
"""

from __future__ import annotations

import json
import os
import threading
import time

_lock = threading.Lock()
_state: dict[str, object] = {"pid": 0}
_count = 0
_first_start = 0.0
_last_end = 0.0
_latencies: list[float] = []


def _ensure_flusher() -> None:
    if _state["pid"] == os.getpid():
        return
    with _lock:
        if _state["pid"] == os.getpid():
            return
        _state["pid"] = os.getpid()
        threading.Thread(target=_flush_forever, name="bench-probe", daemon=True).start()


def _flush_forever() -> None:
    directory = os.environ["BENCH_PROBE_DIR"]
    path = os.path.join(directory, f"{os.getpid()}.json")
    tmp = path + ".tmp"
    written = None
    while True:
        with _lock:
            snapshot = (_count, _first_start, _last_end, len(_latencies))
            latencies = list(_latencies)
        if snapshot != written:
            with open(tmp, "w") as f:
                json.dump({"count": snapshot[0], "first_start": snapshot[1],
                           "last_end": snapshot[2], "latencies": latencies}, f)
            os.replace(tmp, path)
            written = snapshot
        time.sleep(0.02)


def start(enqueued_at: float | None = None) -> None:
    """Call first thing in the task. `enqueued_at`: time.time() at enqueue (latency jobs)."""
    global _first_start
    now = time.time()
    _ensure_flusher()
    with _lock:
        if not _first_start:
            _first_start = now
        if enqueued_at is not None:
            _latencies.append(now - enqueued_at)


def end() -> None:
    """Call last thing in the task."""
    global _count, _last_end
    now = time.time()
    with _lock:
        _count += 1
        _last_end = now
