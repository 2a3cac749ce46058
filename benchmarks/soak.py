"""A soak of conveyor on PostgreSQL: steady enqueue and drain, sampled every minute.

    python benchmarks/soak.py --rate 3000 --minutes 30
    python benchmarks/soak.py --rate 200 --minutes 2 --retention 30   # smoke run

A throw-away database; 2 worker processes x 8 slots (`conveyor worker`) with the
app's retention set to --retention seconds (pruning as shipped: the leader, every
minute); `conveyor web` beside them, its dashboard and API read every 5 s; a
producer process enqueuing --rate jobs/s in batches every 100 ms. Every minute:
jobs started that minute and their p99 pickup latency (start - enqueue, measured
inside the task, see systems/soak_app.py), the job table's size with its indexes
(and partitions), dead tuples, autovacuum runs, WAL written, and the RSS of the
workers (process trees) and of the web process. Writes
benchmarks/results/soak-<UTC time>.{json,md,png}.

With --diag SECONDS, also every SECONDS: what each server connection of the
database is doing (state, wait event, how long its statement and transaction have
run, which connections block it, the statement's start), the job table's tuple
counts and vacuum progress, and how many jobs the workers started so far, as
JSON lines in soak-<UTC time>-diag.jsonl; the workers' and web's warnings in
soak-<UTC time>-processes.log; and the plan of every statement that
ran over a second (auto_explain) and every lock wait over a second, from the
server's log when this user can read it (--server-log), in soak-<UTC time>-slow.log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pgdiag  # noqa: E402
from run import PG_ADMIN_URL, PROCESSES, PY, SLOTS, _pg_admin, machine, tree_rss  # noqa: E402


def produce(rate: float, seconds: float, start_at: float) -> None:
    """The producer process: `rate` jobs/s for `seconds` from wall-clock `start_at`, a
    batch every 100 ms, on schedule."""
    from systems import soak_app

    from conveyor.errors import ConveyorError

    soak_app.setup()
    time.sleep(max(0.0, start_at - time.time()))
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(rate * elapsed) - sent
        if due > 0:
            try:
                soak_app.enqueue_batch(due)
            except ConveyorError as exc:  # not stored: the next batch makes up for it
                print(f"enqueue of {due} failed: {exc}", file=sys.stderr, flush=True)
            else:
                sent += due
        time.sleep(0.1)
    soak_app.close()


def _env(url: str, probe_dir: Path, retention: float) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"BENCH_CONVEYOR_URL": url, "BENCH_PROBE_DIR": str(probe_dir),
                "BENCH_RETENTION": str(retention),
                "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [
                    os.environ.get("PYTHONPATH")])])})
    return env


def _read_minutes(probe_dir: Path) -> dict[int, dict[int, int]]:
    merged: dict[int, dict[int, int]] = {}
    for path in probe_dir.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            for minute, hist in json.loads(path.read_text()).items():
                into = merged.setdefault(int(minute), {})
                for ms, count in hist.items():
                    into[int(ms)] = into.get(int(ms), 0) + count
    return merged


def _started_so_far(probe_dir: Path) -> int:
    return sum(sum(hist.values()) for hist in _read_minutes(probe_dir).values())


_ACTIVITY = """
SELECT pid, client_port AS port, state, wait_event_type AS wait_type, wait_event AS wait,
       round(extract(epoch FROM now() - query_start)::numeric, 3)::float8 AS query_s,
       round(extract(epoch FROM now() - xact_start)::numeric, 3)::float8 AS xact_s,
       age(backend_xmin) AS xmin_age, pg_blocking_pids(pid) AS blocked_by,
       left(regexp_replace(regexp_replace(query, '--[^\\n]*', '', 'g'), '\\s+', ' ', 'g'),
            100) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
ORDER BY pid
"""
_TABLE = """
SELECT s.n_live_tup AS live, s.n_dead_tup AS dead, s.n_mod_since_analyze AS modified,
       c.reltuples::bigint AS reltuples, s.vacuum_count + s.autovacuum_count AS vacuums,
       s.analyze_count + s.autoanalyze_count AS analyzes,
       (SELECT phase FROM pg_stat_progress_vacuum v WHERE v.relid = s.relid) AS vacuum_phase
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.relid = 'conveyor_jobs'::regclass
"""


def _diagnose(url: str, every: float, path: Path, probe_dir: Path,
              stop: threading.Event) -> None:
    """Every `every` seconds, one JSON line: the database's connections and the table."""
    import psycopg
    from psycopg.rows import dict_row

    with open(path, "w") as out, psycopg.connect(
            url, autocommit=True, row_factory=dict_row) as conn:
        while not stop.wait(every):
            try:
                line = {"at": round(time.time(), 3), "started": _started_so_far(probe_dir),
                        "load1": os.getloadavg()[0],
                        "table": conn.execute(_TABLE).fetchone(),
                        "activity": conn.execute(_ACTIVITY).fetchall()}
            except psycopg.Error as exc:
                line = {"at": round(time.time(), 3), "error": str(exc)}
            out.write(json.dumps(line, default=str) + "\n")
            out.flush()


def _log_slow(url: str, dbname: str) -> None:
    """Log the plan of every statement over a second and every lock wait over a second
    (deadlock_timeout) of the soak's database, for its new connections."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for setting, value in (("session_preload_libraries", "auto_explain"),
                               ("auto_explain.log_min_duration", "1s"),
                               ("auto_explain.log_nested_statements", "on"),
                               ("log_lock_waits", "on")):
            conn.execute(f'ALTER DATABASE "{dbname}" SET {setting} = {value!r}')


def _copy_slow(server_log: Path, offset: int, dbname: str, path: Path) -> None:
    """The server log's entries for `dbname` written since `offset` (a line with this
    server's prefix starts an entry; its continuation lines follow it)."""
    keep = False
    with open(server_log, errors="replace") as log, open(path, "w") as out:
        log.seek(offset)
        for line in log:
            if re.match(r"\d{4}-\d\d-\d\d \d", line):
                keep = f"@{dbname} " in line
            if keep:
                out.write(line)


def _p99(hist: dict[int, int]) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= 0.99 * total:
            return float(ms)
    return None


def _poll_web(port: int, stop: threading.Event) -> None:
    paths = ["/", "/jobs?state=succeeded", "/api/v1/jobs?state=succeeded&limit=50",
             "/api/v1/queues", "/dlq"]
    i = 0
    while not stop.wait(5.0):
        with contextlib.suppress(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{port}{paths[i % len(paths)]}",
                                   timeout=30).read()
        i += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, required=True, help="jobs enqueued per second")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--retention", type=float, default=600.0, help="seconds")
    parser.add_argument("--port", type=int, default=8731, help="the web process's port")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--diag", type=float, metavar="SECONDS",
                        help="sample the server's connections every SECONDS (see above)")
    parser.add_argument("--server-log", type=Path,
                        default=Path("/var/log/postgresql/postgresql-15-main.log"),
                        help="the PostgreSQL server's log, for --diag (read if readable)")
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.produce:
        produce(args.rate, args.minutes * 60, args.start_at)
        return 0

    # SIGTERM (and SIGINT, even when started in the background) stop the soak cleanly:
    # the finally below stops the processes and drops the database.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(1))
    started = datetime.now(UTC)
    dbname = f"soak_{os.getpid()}"
    url = re.sub(r"/[^/]*$", f"/{dbname}", PG_ADMIN_URL)
    _pg_admin(f'CREATE DATABASE "{dbname}"')
    stem = args.out / f"soak-{started:%Y-%m-%dT%H%M}Z"
    log_offset = None
    if args.diag:
        _log_slow(url, dbname)
        with contextlib.suppress(OSError):
            log_offset = args.server_log.stat().st_size
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-soak-", dir="/var/tmp") as tmp:
        probe_dir = Path(tmp)
        env = _env(url, probe_dir, args.retention)
        log = open(probe_dir / "processes.log", "w")  # noqa: SIM115 - closed below
        try:
            subprocess.run([PY, "-c", "from systems import soak_app; soak_app.setup()"],
                           cwd=HERE, env=env, check=True)
            workers = [subprocess.Popen(
                [PY, "-m", "conveyor", "worker", "systems.soak_app:app", "-c", str(SLOTS),
                 "--log-level", "warning"], cwd=HERE, env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True) for _ in range(PROCESSES)]
            web = subprocess.Popen(
                [PY, "-m", "conveyor", "web", "systems.soak_app:app", "--no-auth", "--port",
                 str(args.port)], cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            # The producer starts on a wall-clock minute (the probes' minutes) at least
            # 20 s away, so the workers are up, and every sampled minute is a whole
            # minute of production.
            t0 = ((time.time() + 20) // 60 + 1) * 60
            producer = subprocess.Popen(
                [PY, str(HERE / "soak.py"), "--produce", "--rate", str(args.rate), "--minutes",
                 str(args.minutes), "--start-at", str(t0)], cwd=HERE, env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
            procs = [*workers, web, producer]
            threading.Thread(target=_poll_web, args=(args.port, stop), daemon=True).start()
            if args.diag:
                args.out.mkdir(parents=True, exist_ok=True)
                threading.Thread(target=_diagnose, args=(
                    url, args.diag, stem.with_name(stem.name + "-diag.jsonl"), probe_dir, stop,
                ), daemon=True).start()
            time.sleep(max(0.0, t0 - time.time()))
            previous = pgdiag.snapshot(url, 0)
            for minute in range(1, math.ceil(args.minutes) + 1):
                time.sleep(max(0.0, t0 + 60 * minute - time.time()))
                for proc in [*workers, web]:
                    if proc.poll() is not None:
                        raise RuntimeError(f"a process exited with {proc.returncode}: see "
                                           f"{probe_dir / 'processes.log'}")
                snap = pgdiag.snapshot(url, 0)
                samples.append({
                    "minute": minute, "at": snap.at,
                    "table_mib": snap.table_bytes / 2**20,
                    "live": snap.live, "dead": snap.dead,
                    "vacuums": (snap.autovacuums + snap.vacuums
                                - previous.autovacuums - previous.vacuums),
                    "wal_mib": (snap.wal_lsn - previous.wal_lsn) / 2**20,
                    "workers_rss_mib": tree_rss([p.pid for p in workers]) / 2**20,
                    "web_rss_mib": tree_rss([web.pid]) / 2**20,
                    "load1": os.getloadavg()[0],
                })
                previous = snap
                print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
            producer.wait(timeout=60)
            time.sleep(5)  # the last jobs drain and the probes flush
            per_minute = _read_minutes(probe_dir)
            if args.diag:
                log.flush()
                shutil.copy(probe_dir / "processes.log",
                            stem.with_name(stem.name + "-processes.log"))
            if log_offset is not None:
                with contextlib.suppress(OSError):
                    _copy_slow(args.server_log, log_offset, dbname,
                               stem.with_name(stem.name + "-slow.log"))
        finally:
            stop.set()
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()
            _pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    # Each sample covers the wall-clock minute before it: attach that minute's jobs.
    for sample in samples:
        hist = per_minute.get(int(sample["at"] // 60) - 1, {})
        sample["jobs_per_s"] = sum(hist.values()) / 60
        sample["p99_ms"] = _p99(hist)
    write(args, started, samples)
    return 0


def write(args: argparse.Namespace, started: datetime, samples: list[dict[str, Any]]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"soak-{started:%Y-%m-%dT%H%M}Z"
    stem.with_suffix(".json").write_text(json.dumps(
        {"rate": args.rate, "minutes": args.minutes, "retention": args.retention,
         "started": started.isoformat(), "samples": samples}, indent=1))
    lines = [
        f"# Soak, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`python benchmarks/soak.py --rate {args.rate:g} --minutes {args.minutes:g} "
        f"--retention {args.retention:g}`: {PROCESSES} workers x {SLOTS} slots and "
        "`conveyor web` on one PostgreSQL database; sampled every minute. Plot: "
        f"[{stem.name}.png]({stem.name}.png).",
        "",
        *machine(),
        "",
        "| minute | jobs/s | p99 pickup (ms) | job table (MiB) | live | dead | vacuums "
        "| WAL (MiB) | workers RSS (MiB) | web RSS (MiB) | load (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples:
        p99 = "—" if s["p99_ms"] is None else f"{s['p99_ms']:,.0f}"
        lines.append(
            f"| {s['minute']} | {s['jobs_per_s']:,.0f} | {p99} | {s['table_mib']:,.1f} "
            f"| {s['live']:,} | {s['dead']:,} | {s['vacuums']} | {s['wal_mib']:,.1f} "
            f"| {s['workers_rss_mib']:,.0f} | {s['web_rss_mib']:,.0f} | {s['load1']:.1f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(stem.with_suffix(".png"), samples, args)


def plot(path: Path, samples: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["minute"] for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
    panels = [
        ("jobs/s", [("started", "jobs_per_s")]),
        ("p99 pickup (ms)", [("p99", "p99_ms")]),
        ("job table (MiB)", [("table + indexes", "table_mib")]),
        ("RSS (MiB)", [("workers", "workers_rss_mib"), ("web", "web_rss_mib")]),
    ]
    for ax, (label, series) in zip(axes, panels, strict=True):
        for name, key in series:
            ax.plot(minutes, [s[key] if s[key] is not None else float("nan") for s in samples],
                    marker=".", label=name)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
    axes[0].axhline(args.rate, color="grey", linestyle="--", linewidth=0.8)
    axes[-1].set_xlabel("minute")
    fig.suptitle(f"conveyor on PostgreSQL: {args.rate:g} jobs/s enqueued, retention "
                 f"{args.retention:g} s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    sys.exit(main())
