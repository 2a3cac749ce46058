"""Run a fault, then count: what was enqueued, what ran, what the database kept.

The history (see faultapp.py) has one line per event: `<time> <event> <n>
<token> <pid>`, with events `enqueue` (written by the test, once per
acknowledged enqueue, with the job id as token), `start`, `effect`, `end`.
The checker reads it together with the final job records and computes:

- lost: an acknowledged job that is missing, not finished (stranded), or
  marked succeeded without any execution having completed;
- extra executions: starts beyond one per job. Each must be explained: by an
  attempt the job's error history records as failed (lease expired, timeout,
  child died), or by an execution the fault interrupted (no `end` line:
  killed, released at shutdown). Unexplained extra executions fail the test;
- duplicate completions: jobs whose effect completed more than once; each
  must be matched by a broken lease (`LeaseExpired`) or a soft timeout;
- stale completions: a succeeded job whose stored result is not the token of
  its last execution, i.e. an older execution's late write won (fencing failed);
- recovery: seconds from the end of the fault until every job that was in
  flight when it began was back in hand: recorded finished, or started again
  by a worker (with none in flight: until the next completion).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conveyor import Conveyor, JobState
from conveyor.backends.base import JobFilter
from conveyor.types import JobRecord

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "test-artifacts" / "faults"
APP_PATH = "tests.faults.faultapp:app"
BROKEN_LEASE = "conveyor.errors.LeaseExpired"


@dataclass
class Event:
    at: float
    kind: str
    n: int
    token: str
    pid: int


def read_history(path: Path) -> list[Event]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            raise AssertionError(f"torn history line {line!r}: writes must be whole")
        events.append(Event(float(parts[0]), parts[1], int(parts[2]), parts[3], int(parts[4])))
    return events


def record_enqueues(path: Path, jobs: Iterable[tuple[int, int]]) -> None:
    """Append an `enqueue` line per acknowledged (n, job id)."""
    now = time.time()
    lines = "".join(f"{now:.6f} enqueue {n} {job_id} {os.getpid()}\n" for n, job_id in jobs)
    with path.open("a") as f:
        f.write(lines)


@dataclass
class Figures:
    fault: str
    backend: str
    variant: str = ""
    jobs: int = 0
    succeeded: int = 0
    dead: int = 0
    lost: int = 0
    executions: int = 0
    extra_executions: int = 0
    unexplained_extra: int = 0
    duplicate_completions: int = 0
    broken_leases: int = 0
    stale_completions: int = 0
    recovery_s: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    lost_jobs: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "-".join(p for p in (self.fault, self.backend, self.variant) if p)

    def save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        row = asdict(self)
        row["recorded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (RESULTS / f"{self.name}.json").write_text(json.dumps(row, indent=2, sort_keys=True))

    def show(self) -> None:
        rec = "-" if self.recovery_s is None else f"{self.recovery_s:.2f}s"
        print(
            f"\n[{self.name}] jobs={self.jobs} succeeded={self.succeeded} dead={self.dead} "
            f"lost={self.lost} executions={self.executions} extra={self.extra_executions} "
            f"(unexplained={self.unexplained_extra}) duplicate_completions="
            f"{self.duplicate_completions} broken_leases={self.broken_leases} "
            f"stale={self.stale_completions} recovery={rec} {self.notes or ''}"
        )

    def assert_sound(self) -> None:
        """What every fault must show: nothing lost, every extra execution explained."""
        assert self.lost == 0, f"{self.name}: lost jobs {self.lost_jobs}"
        assert self.unexplained_extra == 0, f"{self.name}: unexplained extra executions"
        assert self.stale_completions == 0, f"{self.name}: a stale completion was kept"
        assert self.duplicate_completions <= self.broken_leases, (
            f"{self.name}: {self.duplicate_completions} duplicate completions but only "
            f"{self.broken_leases} broken leases"
        )


def job_records(app: Conveyor) -> list[JobRecord]:
    return app.backend.job_list(JobFilter(limit=10_000_000))


def check(
    app: Conveyor,
    history: Path,
    *,
    fault: str,
    backend: str,
    variant: str = "",
    fault_at: float | None = None,
    fault_end: float | None = None,
    notes: dict[str, Any] | None = None,
) -> Figures:
    events = read_history(history)
    records = {r.id: r for r in job_records(app)}
    enqueued = {int(e.token): e.n for e in events if e.kind == "enqueue"}
    starts: dict[int, list[Event]] = defaultdict(list)
    ends: Counter[int] = Counter()
    ended_tokens: set[str] = set()
    for e in events:
        if e.kind == "start":
            starts[e.n].append(e)
        elif e.kind == "end":
            ends[e.n] += 1
            ended_tokens.add(e.token)
    figures = Figures(fault=fault, backend=backend, variant=variant, jobs=len(enqueued),
                      notes=dict(notes or {}))
    job_of_n = {n: job_id for job_id, n in enqueued.items()}
    for job_id, n in enqueued.items():
        record = records.get(job_id)
        runs = starts.get(n, [])
        if record is None or not record.state.finished or record.state is JobState.CANCELLED:
            figures.lost += 1
            figures.lost_jobs.append(job_id)
            continue
        if record.state is JobState.SUCCEEDED:
            figures.succeeded += 1
            if ends[n] == 0:  # "succeeded" with no execution that completed
                figures.lost += 1
                figures.lost_jobs.append(job_id)
            elif runs and record.result != runs[-1].token:
                figures.stale_completions += 1
        else:
            figures.dead += 1
        errors = [e.type for e in record.errors]
        broken = errors.count(BROKEN_LEASE)
        figures.broken_leases += broken
        figures.executions += len(runs)
        extra = max(0, len(runs) - 1)
        interrupted = sum(1 for r in runs if r.token not in ended_tokens)
        figures.extra_executions += extra
        figures.unexplained_extra += max(0, extra - len(errors) - interrupted)
        figures.duplicate_completions += max(0, ends[n] - 1)
    if fault_at is not None:
        figures.recovery_s = _recovery(events, records, job_of_n, fault_at, fault_end or fault_at)
    return figures


def _recovery(
    events: list[Event], records: dict[int, JobRecord], job_of_n: dict[int, int],
    fault_at: float, fault_end: float,
) -> float | None:
    open_runs: dict[int, int] = Counter()
    for e in events:
        if e.at > fault_at:
            break
        if e.kind == "start":
            open_runs[e.n] += 1
        elif e.kind == "end":
            open_runs[e.n] -= 1
    in_flight = [n for n, c in open_runs.items() if c > 0]
    if in_flight:
        # each is back in hand once recorded finished or started again by a worker
        restarted: dict[int, float] = {}
        for e in events:
            if e.kind == "start" and e.at > fault_at and e.n not in restarted:
                restarted[e.n] = e.at
        back = []
        for n in in_flight:
            record = records.get(job_of_n.get(n, -1))
            times = [restarted[n]] if n in restarted else []
            if record is not None and record.finished_at is not None:
                times.append(record.finished_at.timestamp())
            if not times:
                return None
            back.append(min(times))
        return round(max(0.0, max(back) - fault_end), 3)
    later = [e.at for e in events if e.kind == "end" and e.at >= fault_end]
    return round(min(later) - fault_end, 3) if later else None


# -- processes -------------------------------------------------------------------------
def app_env(url: str, history: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CONVEYOR_URL": url, "HISTORY": str(history),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.update(extra)
    return env


def start_worker(
    tmp: Path, url: str, history: Path, *args: str, log_name: str = "worker",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`conveyor worker` on the fault app, its output kept in tmp/<log_name>.log."""
    path = tmp / f"{log_name}.log"
    log = path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", APP_PATH, "--poll-interval", "0.05",
         *args],
        cwd=REPO, env=env or app_env(url, history), stdout=log, stderr=subprocess.STDOUT,
    )
    _logs[proc.pid] = path
    return proc


_logs: dict[int, Path] = {}
"""The log file of each worker `start_worker` started, by pid."""


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM the worker and wait for it; one still running after `timeout` has its
    threads' stacks dumped (SIGUSR1) into its log, printed here, and is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        proc.kill()
        code = proc.wait()
        path = _logs.get(proc.pid)
        if path is not None and path.exists():
            tail = path.read_text(errors="replace")[-20_000:]
            print(f"--- worker {proc.pid} did not stop within {timeout}s; its log ends:\n{tail}")
        return code


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def count_events(history: Path, kind: str, n: int | None = None) -> int:
    if not history.exists():
        return 0
    text = history.read_text()
    if n is None:
        return text.count(f" {kind} ")
    return sum(1 for line in text.splitlines() if f" {kind} {n} " in line)


def states(app: Conveyor) -> Counter[str]:
    counts: Counter[str] = Counter()
    for stats in app.backend.queue_stats():
        for state, c in stats.counts.items():
            counts[str(state)] += c
    return counts


def all_finished(app: Conveyor, total: int) -> Callable[[], bool]:
    def done() -> bool:
        c = states(app)
        return c["succeeded"] + c["dead"] + c["cancelled"] >= total
    return done


def enqueue_many(
    app: Conveyor, history: Path, task: str, arguments: list[tuple[Any, ...]],
    first: int = 0, chunk: int = 5_000,
) -> list[int]:
    """Enqueue task(n, *arguments[i]) with n = first + i; record each acknowledged job."""
    ids: list[int] = []
    for start in range(0, len(arguments), chunk):
        part = arguments[start:start + chunk]
        jobs = app.tasks[task].enqueue_many(
            [(first + start + i, *args) for i, args in enumerate(part)]
        )
        record_enqueues(history, [(first + start + i, j.id) for i, j in enumerate(jobs)])
        ids += [j.id for j in jobs]
    return ids
