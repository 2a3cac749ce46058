"""The client side of one benchmark step, in its own process.

    python benchmarks/client.py MODULE setup
    python benchmarks/client.py MODULE single KIND N     # N calls, one job each
    python benchmarks/client.py MODULE bulk KIND N       # the system's bulk API
    python benchmarks/client.py MODULE load KIND N       # bulk if there is one, else single
    python benchmarks/client.py MODULE latency N RATE    # N jobs at a steady RATE per second

Prints one JSON object: {"elapsed": seconds, "bulk": bool}.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str]) -> None:
    module = importlib.import_module(f"systems.{argv[0]}")
    action = argv[1]
    bulk = False
    if action == "setup":
        module.setup()
        elapsed = 0.0
    elif action in ("single", "bulk", "load"):
        kind, n = argv[2], int(argv[3])
        bulk = action == "bulk" or (action == "load" and module.BULK)
        if bulk and not module.BULK:
            print(json.dumps({"elapsed": None, "bulk": False}))
            return
        if action == "single":
            module.enqueue_one(kind)  # connect first: the figure is the steady rate
        started = time.perf_counter()
        if bulk:
            module.enqueue_many(kind, n)
        else:
            for _ in range(n):
                module.enqueue_one(kind)
        elapsed = time.perf_counter() - started
    elif action == "latency":
        n, rate = int(argv[2]), float(argv[3])
        started = time.perf_counter()
        for i in range(n):
            due = started + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            module.enqueue_one("latency", time.time())
        elapsed = time.perf_counter() - started
    else:
        raise SystemExit(f"unknown action {action!r}")
    module.close()
    print(json.dumps({"elapsed": elapsed, "bulk": bulk}))


if __name__ == "__main__":
    main(sys.argv[1:])
