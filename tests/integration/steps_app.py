"""Tasks with durable steps, waits and cancellation, run by real worker processes in
tests/integration/test_steps.py (and imported by process-pool children).

The database is CONVEYOR_URL; side effects go to the file STEPS_HISTORY, one line
per call of a step's function, appended with O_APPEND (atomic for short lines).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from conveyor import Conveyor, JobContext

app = Conveyor(os.environ.get("CONVEYOR_URL", "sqlite:///steps.db"), poll_interval=0.05,
               lease=1.0)


def _effect(job: int, step: int) -> str:
    """The side effect of one step: a history line with a fresh id, which the step
    returns (so the stored result names the call that was recorded)."""
    call = uuid.uuid4().hex
    time.sleep(0.015)  # long enough for kills to land inside a step now and then
    fd = os.open(os.environ["STEPS_HISTORY"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job} {step} {call}\n".encode())
    finally:
        os.close(fd)
    return call


@app.task(name="five_steps", max_attempts=100)
def five_steps(ctx: JobContext, n: int) -> list[str]:
    return [ctx.step(f"s{i}", _effect, n, i) for i in range(5)]


@app.task(name="cooperative", max_attempts=1)
def cooperative(ctx: JobContext) -> str:
    ctx.progress(0.0, "spinning")
    while True:
        ctx.check_cancelled()
        time.sleep(0.02)


@app.task(name="stubborn", max_attempts=1)
def stubborn(ctx: JobContext) -> str:
    ctx.progress(0.0, "ignoring cancellation")
    time.sleep(30)
    return "finished anyway"


@app.task(name="napper", max_attempts=3)
def napper(ctx: JobContext, seconds: float) -> dict[str, Any]:
    ctx.sleep(seconds)
    return {"resumed": time.time()}
