"""The soak's app (benchmarks/soak.py): one task that records its pickup latency.

Each worker process keeps, per wall-clock minute, how many jobs started and a
histogram of their pickup latency (start - enqueue) in whole milliseconds, and
writes it to ``$BENCH_PROBE_DIR/<pid>.json`` every second (atomically), so the
soak reads throughput and p99 per minute without a query against the job table.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict

from conveyor import Conveyor

app = Conveyor(
    os.environ.get("BENCH_CONVEYOR_URL"),
    poll_interval=1.0,
    retention=float(os.environ.get("BENCH_RETENTION", "600")),
    # The machine is shared: a batch that waits over a second for the database on a
    # loaded machine is slow, not lost (the default, 1 s, would give up on it).
    unreachable_timeout=30.0,
)

_lock = threading.Lock()
_minutes: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
_flusher: list[int] = []


def _flush_forever() -> None:
    path = os.path.join(os.environ["BENCH_PROBE_DIR"], f"{os.getpid()}.json")
    while True:
        time.sleep(1.0)
        with _lock:
            data = {str(m): {str(k): v for k, v in h.items()} for m, h in _minutes.items()}
        with open(path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)


@app.task
def soak(enqueued_at: float) -> None:
    now = time.time()
    with _lock:
        if not _flusher or _flusher[0] != os.getpid():
            _flusher[:] = [os.getpid()]
            threading.Thread(target=_flush_forever, daemon=True).start()
        _minutes[int(now // 60)][max(0, int((now - enqueued_at) * 1000))] += 1


def setup() -> None:
    app.migrate()


def enqueue_batch(n: int) -> None:
    at = time.time()
    soak.enqueue_many((at,) for _ in range(n))


def close() -> None:
    app.close()
