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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
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


def produce(rate: float, seconds: float) -> None:
    """The producer process: `rate` jobs/s for `seconds`, a batch every 100 ms, on schedule."""
    from systems import soak_app

    from conveyor.errors import ConveyorError

    soak_app.setup()
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
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.produce:
        produce(args.rate, args.minutes * 60)
        return 0

    # SIGTERM (and SIGINT, even when started in the background) stop the soak cleanly:
    # the finally below stops the processes and drops the database.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(1))
    started = datetime.now(UTC)
    dbname = f"soak_{os.getpid()}"
    url = re.sub(r"/[^/]*$", f"/{dbname}", PG_ADMIN_URL)
    _pg_admin(f'CREATE DATABASE "{dbname}"')
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
            producer = subprocess.Popen(
                [PY, str(HERE / "soak.py"), "--produce", "--rate", str(args.rate), "--minutes",
                 str(args.minutes)], cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            procs = [*workers, web, producer]
            threading.Thread(target=_poll_web, args=(args.port, stop), daemon=True).start()
            t0 = (time.time() // 60 + 1) * 60  # samples on wall-clock minutes (the probes')
            previous = pgdiag.snapshot(url, 0)
            minute = 0
            while producer.poll() is None:
                time.sleep(max(0.0, t0 + 60 * (minute + 1) - time.time()))
                minute += 1
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
            time.sleep(5)  # the last jobs drain and the probes flush
            per_minute = _read_minutes(probe_dir)
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
