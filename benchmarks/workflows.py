"""Workflows: conveyor against Celery's canvas and DBOS, in one run.

    python benchmarks/run.py --workflows            # chains and chords, every system
    python benchmarks/run.py --workflows --quick    # small sizes: checks the runner works

For each system, 2 worker processes x 8 slots are started and warmed up (one chain
goes through), then, timed from the first enqueue to the last completion:

1. chains: N chains of 3 no-op jobs, each passing its result to the next;
2. chords: M chords of 100 no-op jobs and a callback that receives the 100 results.

Results are end to end (enqueue by one client process, then execution): chains/s
and chords/s, with jobs/s beside them. Completion is counted by the last job of each
chain and each chord's callback, appending a line to a file.

- conveyor: `app.enqueue_workflow(chain(...))` / `chord(...)`, one transaction each,
  on SQLite and on PostgreSQL (LISTEN/NOTIFY), thread workers.
- Celery: `chain(...)`, `chord(group, callback)` with Redis as broker and result
  backend (a chord needs one), thread pool workers, acks late.
- DBOS: a chain is one workflow of three steps; a chord is a workflow that enqueues
  one single-step workflow per member on a DBOS queue and waits for them, then runs
  the callback step (the chords themselves on a second queue, so a waiting chord
  never takes a member's slot); PostgreSQL with LISTEN/NOTIFY.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SYSTEMS_DIR = HERE / "systems"
WIDTH = 100


@dataclass(frozen=True)
class WorkflowSizes:
    chains: int
    chords: int


FULL = WorkflowSizes(chains=300, chords=10)
QUICK = WorkflowSizes(chains=50, chords=3)


@dataclass
class WorkflowResult:
    chains_per_s: float | None = None
    chords_per_s: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class WorkflowSystem:
    name: str
    module: str
    store: str
    """sqlite, postgres or redis+postgres: what the runner creates for it."""


SYSTEMS = [
    WorkflowSystem("conveyor-sqlite", "wf_conveyor", "sqlite"),
    WorkflowSystem("conveyor-postgres", "wf_conveyor", "postgres"),
    WorkflowSystem("celery (redis)", "wf_celery", "redis"),
    WorkflowSystem("dbos (postgres)", "wf_dbos", "dbos"),
]


def _count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait(path: Path, n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while _count(path) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{_count(path)} of {n} done after {timeout:.0f}s")
        time.sleep(0.005)
    return time.monotonic()


def run_system(system: WorkflowSystem, sizes: WorkflowSizes, tmp: Path,
               env_for: Callable[[WorkflowSystem, Path], dict[str, str]],
               log: Callable[[str], None]) -> WorkflowResult:
    done = tmp / f"{system.module}-{system.store}.done"
    env = {**env_for(system, tmp), "BENCH_WF_DONE": str(done)}
    env["PYTHONPATH"] = os.pathsep.join([str(SYSTEMS_DIR), env.get("PYTHONPATH", "")])
    saved = dict(os.environ)
    os.environ.update(env)
    sys.path.insert(0, str(SYSTEMS_DIR))
    # Read again for this system's environment (conveyor runs twice, on two stores),
    # except DBOS's, which refuses to register a function twice in one process.
    fresh = system.module in sys.modules and system.module != "wf_dbos"
    module: Any = importlib.import_module(system.module)
    if fresh:
        module = importlib.reload(module)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        module.setup()
        logs = (tmp / f"{system.module}-{system.store}.log").open("ab")
        workers = [subprocess.Popen(module.worker_command(sys.executable), cwd=SYSTEMS_DIR,
                                    env=env, stdout=logs, stderr=subprocess.STDOUT)
                   for _ in range(2)]
        module.enqueue_chains(1)  # warm-up: workers up and connected
        _wait(done, 1, 120)
        start = time.monotonic()
        module.enqueue_chains(sizes.chains)
        end = _wait(done, 1 + sizes.chains, 600)
        chains = sizes.chains / (end - start)
        log(f"{system.name}: {chains:,.0f} chains/s")
        start = time.monotonic()
        module.enqueue_chords(sizes.chords, WIDTH)
        end = _wait(done, 1 + sizes.chains + sizes.chords, 600)
        chords = sizes.chords / (end - start)
        log(f"{system.name}: {chords:,.1f} chords/s")
        return WorkflowResult(chains, chords)
    except Exception as exc:
        log(f"{system.name}: FAILED: {type(exc).__name__}: {exc}")
        return WorkflowResult(error=f"{type(exc).__name__}: {str(exc)[-300:]}")
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(Exception):  # closing a benchmark client: best effort
            module.close()
        sys.path.remove(str(SYSTEMS_DIR))
        os.environ.clear()
        os.environ.update(saved)


def table(rows: list[tuple[WorkflowSystem, WorkflowResult]]) -> list[str]:
    lines = [
        "| system | 3-job chains/s | (jobs/s) | 100-wide chords/s | (jobs/s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for system, r in rows:
        if r.error:
            lines.append(f"| {system.name} | failed: {r.error} | | | |")
            continue
        assert r.chains_per_s is not None and r.chords_per_s is not None
        lines.append(
            f"| {system.name} | {r.chains_per_s:,.0f} | {3 * r.chains_per_s:,.0f} | "
            f"{r.chords_per_s:,.1f} | {(WIDTH + 1) * r.chords_per_s:,.0f} |"
        )
    return lines
