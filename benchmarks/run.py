"""conveyor against its peers, on this machine, in one run.

    pip install -e '.[bench]'
    python benchmarks/run.py            # full run (about 15 minutes on 2 cores)
    python benchmarks/run.py --quick    # small sizes, one run: checks the runner works
    python benchmarks/run.py --only conveyor-sqlite,huey-sqlite --runs 1

For every system, each run measures, with workers of the same shape (2
processes x 8 slots wherever the system allows it):

1. enqueue throughput: one job per call, and with the system's bulk API;
2. drain: N no-op jobs, then M jobs that sleep 10 ms; enqueued first, workers
   started afterwards; throughput = jobs / (last finish - first start), as the
   tasks themselves record it (see probe.py);
3. pickup latency on an idle system: jobs enqueued at a steady rate,
   start - enqueue (p50/p95/p99);
4. peak RSS of all worker processes (the process trees) during each drain.

Each figure is the median of the runs. Every step runs in its own processes:
the clients through client.py, the workers through each system's own command
line. PostgreSQL systems get a throw-away database each (created and dropped
here); Redis systems share one dedicated database index, flushed between steps.
Results go to benchmarks/results/<UTC time>.md and benchmarks/results/latest.md;
with --readme the README's performance section is replaced by the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
PY = sys.executable

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
"""A database index of its own: the runner flushes it (and only it) between steps."""

PROCESSES = 2
SLOTS = 8
SLOW_RUN = 60.0
"""Seconds: a system whose first run takes longer is run once, not `runs` times, so the
whole comparison stays near 15 minutes on 2 cores. The results say how many runs each
figure is the median of."""


@dataclass(frozen=True)
class Sizes:
    single: int
    drain_noop: int
    drain_sleep: int
    latency_jobs: int
    latency_rate: float
    runs: int


FULL = Sizes(single=2_000, drain_noop=20_000, drain_sleep=2_000, latency_jobs=500,
             latency_rate=100.0, runs=3)
QUICK = Sizes(single=200, drain_noop=2_000, drain_sleep=200, latency_jobs=50,
              latency_rate=100.0, runs=1)


# -- the systems ------------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    """Where one system keeps its jobs during one step."""

    vars: dict[str, str]
    workdir: Path


@dataclass(frozen=True)
class System:
    name: str
    module: str
    store: str
    """sqlite, postgres or redis."""
    packages: tuple[str, ...]
    settings: str
    workers: Callable[[Env], list[list[str]]]
    extra_env: dict[str, str] = field(default_factory=dict)
    install: Callable[[Env], list[list[str]]] = lambda env: []
    """Commands that create the system's schema (besides the module's setup())."""


def _conveyor_workers(env: Env) -> list[list[str]]:
    return [[PY, "-m", "conveyor", "worker", "systems.conveyor_app:app", "-c", str(SLOTS),
             "--log-level", "warning"] for _ in range(PROCESSES)]


def _celery_workers(env: Env) -> list[list[str]]:
    return [[str(BIN / "celery"), "-A", "systems.celery_app", "worker", "-P", "threads",
             "-c", str(SLOTS), "-Q", "bench", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "WARNING", "-n", f"bench{i}@%h"]
            for i in range(PROCESSES)]


def _rq_workers(env: Env) -> list[list[str]]:
    # RQ has no threads: a pool of 16 SimpleWorker processes (no fork per job) gives 16 slots.
    return [[str(BIN / "rq"), "worker-pool", "-n", str(PROCESSES * SLOTS), "-w",
             "rq.worker.SimpleWorker", "-u", REDIS_URL, "-q", "bench"]]


def _dramatiq_workers(env: Env) -> list[list[str]]:
    return [[str(BIN / "dramatiq"), "systems.dramatiq_app", "--processes", str(PROCESSES),
             "--threads", str(SLOTS)]]


def _huey_workers(env: Env) -> list[list[str]]:
    return [[str(BIN / "huey_consumer"), "systems.huey_app.huey", "-w", str(SLOTS), "-k",
             "thread", "-n", "-q"] for _ in range(PROCESSES)]


def _procrastinate_workers(env: Env) -> list[list[str]]:
    return [[str(BIN / "procrastinate"), "--app=systems.procrastinate_app.app", "worker",
             "-c", str(SLOTS), "-q", "bench"] for _ in range(PROCESSES)]


def _pgqueuer_workers(env: Env) -> list[list[str]]:
    # pgqueuer.run(), what `pgq run ... --max-concurrent-tasks N` calls (see the module).
    return [[PY, "-m", "systems.pgqueuer_app", str(SLOTS)] for _ in range(PROCESSES)]


def _pgqueuer_default_workers(env: Env) -> list[list[str]]:
    return [[PY, "-m", "systems.pgqueuer_app", "0"]]


def _pgqueuer_install(env: Env) -> list[list[str]]:
    return [[str(BIN / "pgq"), "--pg-dsn", env.vars["BENCH_PG_URL"], "install"]]


SYSTEMS: list[System] = [
    System(
        "conveyor-sqlite", "conveyor_app", "sqlite", ("conveyor",),
        f"{PROCESSES} x `conveyor worker -c {SLOTS}` (threads); SQLite WAL, synchronous=FULL",
        _conveyor_workers,
    ),
    System(
        "conveyor-postgres", "conveyor_app", "postgres", ("conveyor", "psycopg"),
        f"{PROCESSES} x `conveyor worker -c {SLOTS}` (threads); LISTEN/NOTIFY; "
        "synchronous_commit on",
        _conveyor_workers,
    ),
    # Flow control's cost on the drain (docs/performance.md): the retry budget off (no
    # attempt middleware, the path before shared breakers), and a closed shared breaker.
    *(
        System(
            f"conveyor-{store}-{flow}", "conveyor_app", store,
            ("conveyor", "psycopg") if store == "postgres" else ("conveyor",),
            f"as conveyor-{store}, {what}", _conveyor_workers, {"BENCH_CONVEYOR_FLOW": flow},
        )
        for store in ("sqlite", "postgres")
        for flow, what in (
            ("flow-off", "retry budget off (`Conveyor(retry_budget=None)`)"),
            ("breaker", "a closed shared circuit breaker on every task"),
        )
    ),
    System(
        "conveyor-sqlite-rate-limit", "conveyor_app", "sqlite", ("conveyor",),
        "as conveyor-sqlite, every job under one rate limit far above the drain rate "
        "(1,000,000/s): what the limited fetch costs",
        _conveyor_workers, {"BENCH_CONVEYOR_FLOW": "rate"},
    ),
    System(
        "conveyor-postgres-rate-limit", "conveyor_app", "postgres", ("conveyor", "psycopg"),
        "as conveyor-postgres, every job under one rate limit far above the drain rate "
        "(1,000,000/s)",
        _conveyor_workers, {"BENCH_CONVEYOR_FLOW": "rate"},
    ),
    System(
        "conveyor-sqlite-1000-keys", "conveyor_app", "sqlite", ("conveyor",),
        "as conveyor-sqlite, jobs spread over 1,000 active keys, at most 2 running per key "
        "(keys take turns)",
        _conveyor_workers, {"BENCH_CONVEYOR_FLOW": "keys"},
    ),
    System(
        "conveyor-postgres-1000-keys", "conveyor_app", "postgres", ("conveyor", "psycopg"),
        "as conveyor-postgres, jobs spread over 1,000 active keys, at most 2 running per key",
        _conveyor_workers, {"BENCH_CONVEYOR_FLOW": "keys"},
    ),
    System(
        "huey-sqlite", "huey_app", "sqlite", ("huey",),
        f"{PROCESSES} x `huey_consumer -w {SLOTS} -k thread` (default polling: 0.1 s up to "
        "10 s); SqliteHuey(fsync=True, journal_mode=wal)",
        _huey_workers, {"BENCH_HUEY_STORAGE": "sqlite"},
    ),
    System(
        "huey-redis", "huey_app", "redis", ("huey", "redis"),
        f"{PROCESSES} x `huey_consumer -w {SLOTS} -k thread`; RedisHuey (blocking pop)",
        _huey_workers, {"BENCH_HUEY_STORAGE": "redis"},
    ),
    System(
        "celery", "celery_app", "redis", ("celery", "kombu", "redis"),
        f"{PROCESSES} x `celery worker -P threads -c {SLOTS}`; acks_late, no result backend, "
        "prefetch multiplier 4, without gossip/mingle/heartbeat",
        _celery_workers,
    ),
    System(
        "rq", "rq_app", "redis", ("rq", "redis"),
        f"`rq worker-pool -n {PROCESSES * SLOTS} -w rq.worker.SimpleWorker` (RQ has no "
        "threads; no fork per job)",
        _rq_workers,
    ),
    System(
        "dramatiq", "dramatiq_app", "redis", ("dramatiq", "redis"),
        f"`dramatiq --processes {PROCESSES} --threads {SLOTS}`; RedisBroker, default middleware",
        _dramatiq_workers,
    ),
    System(
        "procrastinate", "procrastinate_app", "postgres", ("procrastinate", "psycopg"),
        f"{PROCESSES} x `procrastinate worker -c {SLOTS}` (async, LISTEN/NOTIFY); "
        "PsycopgConnector",
        _procrastinate_workers,
    ),
    System(
        "pgqueuer", "pgqueuer_app", "postgres", ("pgqueuer", "asyncpg"),
        f"{PROCESSES} x `pgqueuer.run(max_concurrent_tasks={SLOTS})` (async, batch size 4, the "
        "most it allows at 8; LISTEN/NOTIFY); AsyncpgDriver",
        _pgqueuer_workers, install=_pgqueuer_install,
    ),
    System(
        "pgqueuer-defaults", "pgqueuer_app", "postgres", ("pgqueuer", "asyncpg"),
        "1 x `pgqueuer.run()` with its defaults (batch size 10, no concurrency limit): "
        "PgQueuer at its own best, not at the common shape",
        _pgqueuer_default_workers, install=_pgqueuer_install,
    ),
]


# -- stores -----------------------------------------------------------------------------


class Stores:
    """Creates and throws away each system's storage."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tag = f"{os.getpid()}"
        self._counter = 0

    @contextlib.contextmanager
    def fresh(self, system: System) -> Iterator[Env]:
        self._counter += 1
        workdir = self.root / f"{system.name}-{self._counter}"
        workdir.mkdir(parents=True)
        env = {"BENCH_REDIS_URL": REDIS_URL, **system.extra_env}
        dbname = None
        if system.store == "sqlite":
            path = workdir / "jobs.db"
            env["BENCH_SQLITE_PATH"] = str(path)
            env["BENCH_CONVEYOR_URL"] = f"sqlite:///{path}"
        elif system.store == "postgres":
            dbname = f"bench_{system.name.replace('-', '_')}_{self.tag}_{self._counter}"
            _pg_admin(f'CREATE DATABASE "{dbname}"')
            url = re.sub(r"/[^/]*$", f"/{dbname}", PG_ADMIN_URL)
            env["BENCH_PG_URL"] = url
            env["BENCH_CONVEYOR_URL"] = url
        else:
            _redis_flush()
        try:
            yield Env(env, workdir)
        finally:
            if dbname is not None:
                _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            if system.store == "redis":
                _redis_flush()
            shutil.rmtree(workdir, ignore_errors=True)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _redis_flush() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


# -- processes ----------------------------------------------------------------------------


def _child_env(env: Env, probe_dir: Path | None = None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(env.vars)
    merged["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if probe_dir is not None:
        merged["BENCH_PROBE_DIR"] = str(probe_dir)
    merged.setdefault("BENCH_PROBE_DIR", str(env.workdir))
    return merged


def client(system: System, env: Env, *args: str | int | float) -> dict[str, Any]:
    result = subprocess.run(
        [PY, str(HERE / "client.py"), system.module, *map(str, args)],
        cwd=HERE, env=_child_env(env), capture_output=True, text=True, timeout=900, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{system.name} client {args}: {result.stderr.strip()[-2000:]}")
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def prepare(system: System, env: Env) -> None:
    for command in system.install(env):
        subprocess.run(command, cwd=HERE, env=_child_env(env), check=True,
                       capture_output=True, timeout=120)
    client(system, env, "setup")


class Workers:
    """The worker processes of one system, their process trees and their RSS."""

    def __init__(self, system: System, env: Env, probe_dir: Path) -> None:
        probe_dir.mkdir(parents=True, exist_ok=True)
        self.probe_dir = probe_dir
        self.log_path = env.workdir / f"workers-{probe_dir.name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.procs = [
            subprocess.Popen(
                command, cwd=HERE, env=_child_env(env, probe_dir), stdout=self._log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
            for command in system.workers(env)
        ]
        self.peak_rss = 0
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def sample_rss(self) -> None:
        self.peak_rss = 0
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample_forever, daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> int:
        self._sampling.clear()
        if self._sampler is not None:
            self._sampler.join()
        return self.peak_rss

    def _sample_forever(self) -> None:
        while self._sampling.is_set():
            self.peak_rss = max(self.peak_rss, tree_rss([p.pid for p in self.procs]))
            time.sleep(0.1)

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                self._log.flush()
                tail = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"a worker exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._log.close()


def tree_rss(roots: list[int]) -> int:
    """Sum of VmRSS (bytes) over the processes `roots` and all their descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total = 0
    todo = list(roots)
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def tree_cpu(roots: list[int]) -> float:
    """User + system CPU seconds of the processes `roots` and all their descendants."""
    import pgdiag

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pgdiag.cpu_seconds(pids)


@dataclass
class Progress:
    count: int
    first_start: float
    last_end: float
    latencies: list[float]


def read_probe(directory: Path) -> Progress:
    count, first, last, latencies = 0, 0.0, 0.0, []
    for path in directory.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced: the next read sees it
        count += data["count"]
        if data["first_start"]:
            first = data["first_start"] if not first else min(first, data["first_start"])
        last = max(last, data["last_end"])
        latencies.extend(data["latencies"])
    return Progress(count, first, last, latencies)


def wait_for(
    workers: Workers, done: Callable[[Progress], bool], timeout: float, *, partial: bool = False
) -> Progress:
    """Wait until `done`; past `timeout`, return what was done if `partial`, else raise."""
    deadline = time.monotonic() + timeout
    while True:
        progress = read_probe(workers.probe_dir)
        if done(progress):
            return progress
        workers.check_alive()
        if time.monotonic() > deadline:
            if partial and progress.count > 0:
                return progress
            raise TimeoutError(f"only {progress.count} jobs done after {timeout:.0f}s")
        time.sleep(0.05)


# -- one run ------------------------------------------------------------------------------


@dataclass
class RunResult:
    single: float | None = None
    bulk: float | None = None
    drain_noop: float | None = None
    drain_sleep: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    rss_noop: float | None = None
    rss_sleep: float | None = None
    error: str | None = None
    partial: list[str] = field(default_factory=list)
    """Drains cut off at DRAIN_CAP: which, and how many jobs they finished."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


DRAIN_CAP = 90.0
"""Seconds a drain may take; a system still draining then is measured on the jobs it
finished (first start to last finish), and the table marks the figure as partial."""


def drain_timeout(n: int) -> float:
    return min(DRAIN_CAP, 30.0 + n / 100.0)


def run_once(system: System, stores: Stores, sizes: Sizes, log: Callable[[str], None]) -> RunResult:
    result = RunResult()
    # 1. enqueue, one per call
    with stores.fresh(system) as env:
        prepare(system, env)
        out = client(system, env, "single", "noop", sizes.single)
        result.single = sizes.single / out["elapsed"]
    # 1b + 2a. bulk enqueue, then drain no-op
    with stores.fresh(system) as env:
        prepare(system, env)
        out = client(system, env, "load", "noop", sizes.drain_noop)
        if out["bulk"]:
            result.bulk = sizes.drain_noop / out["elapsed"]
        workers = Workers(system, env, env.workdir / "probe-noop")
        try:
            workers.sample_rss()
            progress = wait_for(workers, lambda p: p.count >= sizes.drain_noop,
                                drain_timeout(sizes.drain_noop), partial=True)
            if progress.count < sizes.drain_noop:
                result.partial.append(f"no-op drain: {progress.count:,} of {sizes.drain_noop:,}")
            result.rss_noop = workers.stop_sampling() / 2**20
            result.drain_noop = progress.count / (progress.last_end - progress.first_start)
        finally:
            workers.stop_sampling()
            workers.stop()
    # 2b + 3. drain 10 ms jobs, then pickup latency on the same (now idle) workers
    with stores.fresh(system) as env:
        prepare(system, env)
        client(system, env, "load", "sleep", sizes.drain_sleep)
        workers = Workers(system, env, env.workdir / "probe-sleep")
        try:
            workers.sample_rss()
            progress = wait_for(workers, lambda p: p.count >= sizes.drain_sleep,
                                drain_timeout(sizes.drain_sleep), partial=True)
            if progress.count < sizes.drain_sleep:
                result.partial.append(
                    f"10 ms drain: {progress.count:,} of {sizes.drain_sleep:,}"
                )
            result.rss_sleep = workers.stop_sampling() / 2**20
            result.drain_sleep = progress.count / (progress.last_end - progress.first_start)
            time.sleep(1.0)  # idle
            client(system, env, "latency", sizes.latency_jobs, sizes.latency_rate)
            progress = wait_for(workers, lambda p: len(p.latencies) >= sizes.latency_jobs, 60)
            ms = [v * 1000 for v in progress.latencies]
            result.p50, result.p95, result.p99 = (percentile(ms, q) for q in (0.5, 0.95, 0.99))
        finally:
            workers.stop_sampling()
            workers.stop()
    return result


@dataclass
class BacklogResult:
    """One backlog drain: `n` no-op jobs enqueued in bulk, then drained."""

    n: int
    bulk: float | None = None
    first: float | None = None
    """Jobs/s over the first 10% of the backlog (first start to the 10% mark)."""
    last: float | None = None
    """Jobs/s over the last 10% (the 90% mark to the last finish)."""
    whole: float | None = None
    table_mib: float | None = None
    """PostgreSQL: the job table with its indexes when the drain ends."""
    done: int | None = None
    """Jobs finished when the drain was cut off (None: it finished)."""
    diagnostics: list[str] = field(default_factory=list)
    error: str | None = None


BACKLOG_CAP = 420.0
"""Seconds a backlog drain may take (--backlog-cap); a system still draining then is
measured on the jobs it finished: the whole rate from the first start to the last
finish, the first 10% if it got that far, the last 10% not at all."""


def run_backlog(
    system: System, stores: Stores, n: int, log: Callable[[str], None],
    cap: float = BACKLOG_CAP,
) -> BacklogResult:
    """Bulk-enqueue `n` no-op jobs, drain them with PROCESSES x SLOTS for at most `cap`
    seconds; PostgreSQL systems of conveyor also get snapshots of the job table near the
    start and the end (pgdiag)."""
    import pgdiag

    result = BacklogResult(n)
    with stores.fresh(system) as env:
        prepare(system, env)
        out = client(system, env, "load", "noop", n)
        if out["bulk"]:
            result.bulk = n / out["elapsed"]
        log(f"{system.name}: {n:,} enqueued in {out['elapsed']:.1f}s")
        diagnose = system.store == "postgres" and system.module == "conveyor_app"
        url = env.vars.get("BENCH_PG_URL", "")
        snaps: list[pgdiag.Snapshot] = []
        marks = [0.05, 0.92]
        timeline: list[tuple[float, int]] = []
        workers = Workers(system, env, env.workdir / "probe-backlog")
        try:
            deadline = time.monotonic() + cap
            while True:
                progress = read_probe(workers.probe_dir)
                timeline.append((time.time(), progress.count))
                # A mark the drain passed between two looks is taken late, not skipped
                # (a small backlog can drain from under 92% to the end in one look);
                # each snapshot says how many were done when it was taken.
                if diagnose and marks and progress.count >= marks[0] * n:
                    marks.pop(0)
                    snaps.append(pgdiag.snapshot(url, progress.count, explain=True))
                    snaps[-1].worker_cpu = tree_cpu([p.pid for p in workers.procs])
                    continue
                if progress.count >= n:
                    break
                workers.check_alive()
                if time.monotonic() > deadline:
                    if not progress.count:
                        raise TimeoutError(f"no job done in {cap:.0f}s")
                    result.done = progress.count
                    log(f"{system.name}: cut off after {cap:.0f}s, {progress.count:,} done")
                    break
                time.sleep(0.05)
            if diagnose:
                end = pgdiag.snapshot(url, progress.count)
                end.worker_cpu = tree_cpu([p.pid for p in workers.procs])
                result.table_mib = end.table_bytes / 2**20
                if len(snaps) == 2:
                    result.diagnostics = [*pgdiag.describe(snaps[0], snaps[1]),
                                          *pgdiag.describe(snaps[0], end)[:1]]
                    for label, snap in (("start", snaps[0]), ("end", snaps[1])):
                        for name, plan in snap.plans.items():
                            result.diagnostics += [
                                "", f"{name} at the {label} ({snap.done:,} done):", "",
                                "```", plan, "```"]
        finally:
            workers.stop()
    first_start, last_end = progress.first_start, progress.last_end
    done = progress.count
    tenth = n / 10
    reached = [(t, c) for t, c in timeline if c >= tenth]
    if reached:
        at_10, count_10 = reached[0]
        result.first = count_10 / max(1e-9, at_10 - first_start)
    if result.done is None:
        t_90, c_90 = [(t, c) for t, c in timeline if c <= n - tenth][-1]
        result.last = (n - c_90) / max(1e-9, last_end - t_90)
    result.whole = done / max(1e-9, last_end - first_start)
    return result


def backlog_report(results: list[tuple[System, BacklogResult]], started: datetime,
                   loads: dict[str, tuple[tuple[float, ...], tuple[float, ...]]],
                   cap: float = BACKLOG_CAP) -> str:
    out = [
        f"# Backlog drain, {started:%Y-%m-%d %H:%M} UTC",
        "",
        "`python benchmarks/run.py --backlog N`: N no-op jobs enqueued with the system's "
        f"bulk API, then drained by {PROCESSES} worker processes x {SLOTS} slots. First/last "
        "10%: the rate from the first start to the moment 10% of the jobs were done, and from "
        "the 90% mark to the last finish (progress sampled every 50 ms). A drain still running "
        f"after {cap:.0f} s is cut off (\\*): its whole rate is over the jobs done by then "
        "(first start to last finish), and its last 10% is not measured.",
        "",
        *machine(),
        "",
        "| system | backlog | bulk enqueue (jobs/s) | first 10% (jobs/s) | last 10% (jobs/s) "
        "| last / first | whole drain (jobs/s) | job table after (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, r in results:
        ratio = f"{r.last / r.first:.0%}" if r.first and r.last else "—"
        whole = fmt(r.whole) + ("\\*" if r.done is not None else "")
        out.append(f"| {system.name} | {r.n:,} | {fmt(r.bulk)} | {fmt(r.first)} | {fmt(r.last)} "
                   f"| {ratio} | {whole} | {fmt(r.table_mib)} |"
                   + (f" error: {_cell(r.error)}" if r.error else "")
                   + (f" cut off: {r.done:,} done in {cap:.0f} s" if r.done is not None else ""))
    out += ["", "Load average (1/5/15 min) before / after each system (the machine is shared):",
            ""]
    for name, (before, after) in loads.items():
        out.append(f"- {name}: {' / '.join(f'{v:.2f}' for v in before)} -> "
                   f"{' / '.join(f'{v:.2f}' for v in after)}")
    for system, r in results:
        if r.diagnostics:
            out += ["", f"## {system.name}: the job table during the drain", "",
                    *r.diagnostics]
    return "\n".join(out) + "\n"


def median_of(results: list[RunResult]) -> RunResult:
    merged = RunResult()
    for name in ("single", "bulk", "drain_noop", "drain_sleep", "p50", "p95", "p99",
                 "rss_noop", "rss_sleep"):
        values = [getattr(r, name) for r in results if getattr(r, name) is not None]
        setattr(merged, name, statistics.median(values) if values else None)
    errors = [r.error for r in results if r.error]
    merged.error = "; ".join(errors) if errors else None
    merged.partial = [note for r in results for note in r.partial]
    return merged


# -- the report ---------------------------------------------------------------------------


def versions(system: System) -> str:
    parts = []
    for package in system.packages:
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    return ", ".join(parts)


def machine() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.1f} GiB RAM"
    pg = redis_version = "unknown"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(PG_ADMIN_URL) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
            assert row and sync and fsync
            pg = f"{row[0]} (synchronous_commit={sync[0]}, fsync={fsync[0]})"
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        info = client.info()
        config = {**client.config_get("appendonly"), **client.config_get("save")}
        redis_version = (f"{info['redis_version']} (appendonly={config.get('appendonly')}, "
                         f"save=\"{config.get('save', '')}\")")
    return [
        f"- Machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu}){mem}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        f"- PostgreSQL {pg}, 127.0.0.1:5432",
        f"- Redis {redis_version}, 127.0.0.1:6379",
    ]


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def table(rows: list[tuple[System, RunResult]]) -> list[str]:
    lines = [
        "| system | enqueue 1/call (jobs/s) | enqueue bulk (jobs/s) | drain no-op (jobs/s) "
        "| drain 10 ms (jobs/s) | pickup p50 / p95 / p99 (ms) | peak RSS no-op / 10 ms (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for system, r in rows:
        latency = f"{fmt(r.p50, 1)} / {fmt(r.p95, 1)} / {fmt(r.p99, 1)}"
        rss = f"{fmt(r.rss_noop)} / {fmt(r.rss_sleep)}"
        noop_mark = "*" if any(n.startswith("no-op") for n in r.partial) else ""
        sleep_mark = "*" if any(n.startswith("10 ms") for n in r.partial) else ""
        lines.append(
            f"| {system.name} | {fmt(r.single)} | {fmt(r.bulk)} | {fmt(r.drain_noop)}{noop_mark} "
            f"| {fmt(r.drain_sleep)}{sleep_mark} | {latency} | {rss} |"
        )
    if any(r.partial for _, r in rows):
        lines += ["", f"\\* cut off after {DRAIN_CAP:.0f} s: the rate over the jobs that "
                  "finished by then (how many: in the results file)."]
    return lines


def report(
    rows: list[tuple[System, RunResult]],
    runs: dict[str, list[RunResult]],
    loads: dict[str, tuple[tuple[float, ...], tuple[float, ...]]],
    sizes: Sizes,
    started: datetime,
    elapsed: float,
    quick: bool,
) -> str:
    out = [
        f"# Benchmark results, {started:%Y-%m-%d %H:%M} UTC{' (small sizes)' if quick else ''}",
        "",
        f"`python benchmarks/run.py{' --quick' if quick else ''}`, {elapsed / 60:.1f} minutes. "
        f"Each figure is the median of {sizes.runs} run(s), except for a system whose first "
        f"run took over {SLOW_RUN:.0f} s, which ran once (see the runs column below).",
        "",
        *machine(),
        "",
        "## Results",
        "",
        *table(rows),
        "",
        "## What was measured",
        "",
        f"- Enqueue 1/call: {sizes.single:,} no-op jobs, one call each, one client process. "
        "Bulk: the system's bulk API (— when it has none) for the drain load below.",
        f"- Drain: {sizes.drain_noop:,} no-op jobs, then (fresh store) {sizes.drain_sleep:,} jobs "
        "that sleep 10 ms, enqueued before the workers start; jobs / (last finish - first "
        "start) as the tasks record it.",
        f"- Pickup latency: after the 10 ms drain, on the idle workers, {sizes.latency_jobs} jobs "
        f"enqueued at {sizes.latency_rate:.0f}/s; start - enqueue, where enqueue is the time "
        "just before the enqueue call.",
        "- Peak RSS: the sum over every worker process tree, sampled every 100 ms during the "
        "drain.",
        "",
        "## Settings and versions",
        "",
        "| system | runs | versions | workers and durability |",
        "|---|---:|---|---|",
    ]
    for system, _ in rows:
        out.append(f"| {system.name} | {len(runs[system.name])} | {versions(system)} "
                   f"| {system.settings} |")
    out += [
        "",
        "Durability: conveyor on SQLite runs WAL with synchronous=FULL (an acknowledged job "
        "survives power loss); conveyor, Procrastinate and PgQueuer on PostgreSQL commit with "
        "the server's synchronous_commit (above); the Redis systems keep jobs in a Redis without "
        "persistence guarantees of the same kind (see the Redis line above).",
        "",
        "## Load average (1/5/15 min) before and after each system",
        "",
        "The machine is shared: other work ran at the same time. Compare systems measured "
        "under similar load.",
        "",
        "| system | before | after |",
        "|---|---|---|",
    ]
    for name, (before, after) in loads.items():
        out.append(f"| {name} | {' / '.join(f'{v:.2f}' for v in before)} "
                   f"| {' / '.join(f'{v:.2f}' for v in after)} |")
    out += ["", "## Every run", "", "| system | run | enqueue 1/call | bulk | no-op | 10 ms "
            "| p50 / p95 / p99 | RSS | error or cut-off drain |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, results in runs.items():
        for i, r in enumerate(results, 1):
            out.append(
                f"| {name} | {i} | {fmt(r.single)} | {fmt(r.bulk)} | {fmt(r.drain_noop)} | "
                f"{fmt(r.drain_sleep)} | {fmt(r.p50, 1)} / {fmt(r.p95, 1)} / {fmt(r.p99, 1)} | "
                f"{fmt(r.rss_noop)} / {fmt(r.rss_sleep)} | "
                f"{_cell('; '.join(filter(None, [r.error, *r.partial])))} |"
            )
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


README_START = "<!-- benchmark table: start -->"
README_END = "<!-- benchmark table: end -->"


def update_readme(rows: list[tuple[System, RunResult]], results_name: str, started: datetime,
                  sizes: Sizes) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"README.md has no {README_START} ... {README_END} section")
    block = "\n".join([
        README_START,
        f"Median of {sizes.runs} runs on {started:%Y-%m-%d}, 2 cores, every system with "
        f"{PROCESSES} worker processes x {SLOTS} slots (details and settings: "
        f"[benchmarks/results/{results_name}](benchmarks/results/{results_name})):",
        "",
        *table(rows),
        README_END,
    ])
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + block + tail)


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run")
    parser.add_argument("--only", help="comma list of systems (default: all)")
    parser.add_argument("--runs", type=int, help="runs per system (default 3, quick 1)")
    parser.add_argument(
        "--sizes", metavar="SINGLE,NOOP,SLEEP,LATENCY",
        help="job counts instead of the defaults (e.g. 20,200,20,5 for a smoke test)",
    )
    parser.add_argument("--readme", action="store_true",
                        help="replace the README's benchmark table with this run's")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="folder for the results file")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--workflows", action="store_true",
                        help="the workflow scenarios instead (chains and chords, against "
                             "Celery's canvas and DBOS): see benchmarks/workflows.py")
    parser.add_argument("--backlog", type=int, metavar="N",
                        help="only the backlog row: N no-op jobs in bulk, then drained")
    parser.add_argument("--backlog-cap", type=float, default=BACKLOG_CAP, metavar="SECONDS",
                        help="cut a backlog drain off after this long (default %(default)g)")
    args = parser.parse_args(argv)
    if args.workflows:
        return run_workflows(args)
    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = Sizes(**{**sizes.__dict__, "runs": args.runs})
    if args.sizes:
        single, noop, sleep, latency = (int(v) for v in args.sizes.split(","))
        sizes = Sizes(single=single, drain_noop=noop, drain_sleep=sleep, latency_jobs=latency,
                      latency_rate=sizes.latency_rate, runs=args.runs or 1)
    official = not args.quick and not args.sizes
    """Only a run at the issue's sizes updates latest.md and the README."""
    chosen = SYSTEMS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(names) - {s.name for s in SYSTEMS}
        if unknown:
            raise SystemExit(f"unknown systems {sorted(unknown)}: choose from "
                             f"{[s.name for s in SYSTEMS]}")
        chosen = [s for s in SYSTEMS if s.name in names]

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    started = datetime.now(UTC)
    if args.backlog:
        return backlog_main(args, chosen, started, log)
    t0 = time.monotonic()
    rows: list[tuple[System, RunResult]] = []
    runs: dict[str, list[RunResult]] = {}
    loads: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-", dir="/var/tmp") as tmp:
        stores = Stores(Path(tmp))
        for system in chosen:
            before = os.getloadavg()
            results: list[RunResult] = []
            for i in range(sizes.runs):
                log(f"{system.name}: run {i + 1}/{sizes.runs}")
                run_started = time.monotonic()
                try:
                    result = run_once(system, stores, sizes, log)
                except Exception as exc:
                    result = RunResult(error=f"{type(exc).__name__}: {str(exc)[-300:]}")
                    log(f"{system.name}: FAILED: {result.error}")
                results.append(result)
                log(f"{system.name}: {result}")
                if i == 0 and time.monotonic() - run_started > SLOW_RUN:
                    log(f"{system.name}: a run takes over {SLOW_RUN:.0f}s: one run only")
                    break
            loads[system.name] = (before, os.getloadavg())
            runs[system.name] = results
            rows.append((system, median_of(results)))
    elapsed = time.monotonic() - t0
    text = report(rows, runs, loads, sizes, started, elapsed, not official)
    print("\n".join(table(rows)))
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        name = f"{started:%Y-%m-%dT%H%M}Z{'' if official else '-quick'}.md"
        (args.out / name).write_text(text)
        if official:
            (args.out / "latest.md").write_text(text)
        log(f"wrote {args.out / name}")
        if args.readme and official:
            update_readme(rows, name, started, sizes)
    failed = [name for name, results in runs.items() if any(r.error for r in results)]
    return 1 if failed else 0


def run_workflows(args: argparse.Namespace) -> int:
    """Chains and chords per second, conveyor against Celery and DBOS, in one run."""
    import workflows

    sizes = workflows.QUICK if args.quick else workflows.FULL
    chosen = workflows.SYSTEMS
    if args.only:
        names = {n.strip() for n in args.only.split(",") if n.strip()}
        chosen = [s for s in workflows.SYSTEMS if s.name.split()[0] in names or s.name in names]

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    made: list[str] = []

    def env_for(system: workflows.WorkflowSystem, tmp: Path) -> dict[str, str]:
        env = {"BENCH_REDIS_URL": REDIS_URL}
        if system.store == "sqlite":
            env["BENCH_CONVEYOR_URL"] = f"sqlite:///{tmp / 'wf.db'}"
        elif system.store in ("postgres", "dbos"):
            dbname = f"bench_wf_{system.store}_{os.getpid()}"
            _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            _pg_admin(f'CREATE DATABASE "{dbname}"')
            made.append(dbname)
            url = re.sub(r"/[^/]*$", f"/{dbname}", PG_ADMIN_URL)
            env["BENCH_CONVEYOR_URL" if system.store == "postgres" else "BENCH_DBOS_URL"] = url
        else:
            _redis_flush()
        return env

    started = datetime.now(UTC)
    rows: list[tuple[workflows.WorkflowSystem, workflows.WorkflowResult]] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-wfbench-", dir="/var/tmp") as tmp:
        for system in chosen:
            log(f"{system.name}: {sizes.chains} chains, {sizes.chords} chords")
            workdir = Path(tmp) / system.name.split()[0] / system.store
            workdir.mkdir(parents=True)
            rows.append((system, workflows.run_system(system, sizes, workdir, env_for, log)))
            for dbname in made:
                _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            made.clear()
            if system.store == "redis":
                _redis_flush()
    lines = workflows.table(rows)
    print("\n".join(lines))
    if not args.no_write:
        text = "\n".join([
            f"# Workflow benchmark, {started:%Y-%m-%d %H:%M} UTC", "",
            f"`python benchmarks/run.py --workflows{' --quick' if args.quick else ''}`: "
            f"{sizes.chains} chains of 3 no-op jobs, then {sizes.chords} chords of "
            f"{workflows.WIDTH} no-op jobs and a callback, per system, end to end (enqueue "
            "by one client, then execution), 2 worker processes x 8 slots each.", "",
            *machine(), "",
            *lines, "",
            "How each system builds them: see benchmarks/workflows.py.", "",
        ])
        args.out.mkdir(parents=True, exist_ok=True)
        name = f"{started:%Y-%m-%dT%H%M}Z-workflows{'-quick' if args.quick else ''}.md"
        (args.out / name).write_text(text)
        log(f"wrote {args.out / name}")
    return 1 if any(r.error for _, r in rows) else 0


def backlog_main(args: argparse.Namespace, chosen: list[System], started: datetime,
                 log: Callable[[str], None]) -> int:
    results: list[tuple[System, BacklogResult]] = []
    loads: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-", dir="/var/tmp") as tmp:
        stores = Stores(Path(tmp))
        for system in chosen:
            before = os.getloadavg()
            log(f"{system.name}: backlog of {args.backlog:,}")
            try:
                result = run_backlog(system, stores, args.backlog, log, args.backlog_cap)
            except Exception as exc:
                result = BacklogResult(args.backlog, error=f"{type(exc).__name__}: {exc}"[-300:])
            log(f"{system.name}: {result.error or ''} first {fmt(result.first)} last "
                f"{fmt(result.last)} whole {fmt(result.whole)}")
            loads[system.name] = (before, os.getloadavg())
            results.append((system, result))
    text = backlog_report(results, started, loads, args.backlog_cap)
    print(text)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"backlog-{started:%Y-%m-%dT%H%M}Z.md"
        path.write_text(text)
        log(f"wrote {path}")
    return 1 if any(r.error for _, r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
