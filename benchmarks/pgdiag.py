"""Where a PostgreSQL job table spends its time: snapshots taken during a drain.

Used by `run.py --backlog` and `soak.py`. One snapshot is: the job table's live and
dead tuples, vacuum counts, table and index sizes, the WAL position, and (when
`explain`) EXPLAIN (ANALYZE, BUFFERS) of the fetch and of the completion of the
jobs that fetch leased, both inside a transaction that is rolled back, so the
drain it observes is not changed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any


def _query(name: str) -> str:
    return (resources.files("conveyor.backends.postgres").joinpath("queries")
            .joinpath(f"{name}.sql").read_text())


@dataclass
class Snapshot:
    at: float
    done: int
    wal_lsn: int
    live: int
    dead: int
    autovacuums: int
    autoanalyzes: int
    table_bytes: int
    """conveyor_jobs with its partitions, TOAST and indexes."""
    indexes: dict[str, int] = field(default_factory=dict)
    vacuums: int = 0
    """Manual ones: conveyor's maintenance leader (and any operator)."""
    connections: int = 0
    """Server connections open to the database."""
    backend_cpu: float = 0.0
    """CPU seconds (user + system) of the server processes serving the database so far."""
    worker_cpu: float = 0.0
    """CPU seconds of the worker processes so far (set by the caller, who knows them)."""
    plans: dict[str, str] = field(default_factory=dict)


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def snapshot(url: str, done: int, *, explain: bool = False) -> Snapshot:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        # Every relation of the job table: itself and, when it is partitioned, its parts.
        rels = [r["relid"] for r in conn.execute(
            "SELECT relid::regclass::text AS relid FROM pg_partition_tree('conveyor_jobs') "
            "UNION SELECT 'conveyor_jobs'").fetchall()]
        stats = conn.execute(
            "SELECT coalesce(sum(n_live_tup), 0)::bigint AS live, "
            "coalesce(sum(n_dead_tup), 0)::bigint AS dead, "
            "coalesce(sum(autovacuum_count), 0)::bigint AS av, "
            "coalesce(sum(vacuum_count), 0)::bigint AS v, "
            "coalesce(sum(autoanalyze_count), 0)::bigint AS aa "
            "FROM pg_stat_user_tables WHERE relid::regclass::text = ANY(%s)", [rels]).fetchone()
        assert stats is not None
        size = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(r::regclass)), 0)::bigint AS b "
            "FROM unnest(%s::text[]) AS r", [rels]).fetchone()
        assert size is not None
        indexes = {r["name"]: int(r["b"]) for r in conn.execute(
            "SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid) AS b "
            "FROM pg_index WHERE indrelid::regclass::text = ANY(%s) ORDER BY 1", [rels])}
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text AS l").fetchone()
        assert lsn is not None
        pids = [int(r["pid"]) for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]
        snap = Snapshot(time.time(), done, _lsn(lsn["l"]), int(stats["live"]),
                        int(stats["dead"]), int(stats["av"]), int(stats["aa"]), int(size["b"]),
                        indexes, vacuums=int(stats["v"]), connections=len(pids),
                        backend_cpu=cpu_seconds(pids))
        if explain:
            snap.plans = _plans(conn)
    return snap


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (a server on this machine: /proc)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone, or the server is elsewhere
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _plans(conn: Any) -> dict[str, str]:
    fetch = _query("job_fetch")
    complete = _query("job_complete")
    params = {"queues": ["default"], "limit": 16, "worker_id": "diagnostics",
              "lease_seconds": 60.0, "start": 16}
    plans: dict[str, str] = {}
    with conn.transaction(force_rollback=True):
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + fetch, params).fetchall()
        plans["fetch"] = "\n".join(r["QUERY PLAN"] for r in rows)
    with conn.transaction(force_rollback=True):
        leased = conn.execute(fetch, params).fetchall()
        given = [{"job_id": r["id"], "lease_token": r["lease_token"], "outcome": "succeeded",
                  "result": "null", "error": None, "retry_delay": 0.0} for r in leased]
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + complete,
                            {"completions": json.dumps(given)}).fetchall()
        plans["complete"] = "\n".join(r["QUERY PLAN"] for r in rows)
    return plans


def describe(before: Snapshot, after: Snapshot) -> list[str]:
    jobs = max(1, after.done - before.done)
    seconds = max(1e-9, after.at - before.at)
    return [
        f"- {jobs / seconds:,.0f} jobs/s over the span; CPU per job: PostgreSQL "
        f"{(after.backend_cpu - before.backend_cpu) / jobs * 1e6:,.0f} µs, workers "
        f"{(after.worker_cpu - before.worker_cpu) / jobs * 1e6:,.0f} µs; "
        f"{after.connections} server connections",
        f"- jobs done {before.done:,} -> {after.done:,}; WAL "
        f"{(after.wal_lsn - before.wal_lsn) / jobs:,.0f} bytes/job over that span",
        f"- dead tuples {before.dead:,} -> {after.dead:,}; live {before.live:,} -> "
        f"{after.live:,}; autovacuums {before.autovacuums} -> {after.autovacuums}, "
        f"other vacuums {before.vacuums} -> {after.vacuums}, "
        f"autoanalyzes {before.autoanalyzes} -> {after.autoanalyzes}",
        f"- job table with indexes {before.table_bytes / 2**20:,.0f} MiB -> "
        f"{after.table_bytes / 2**20:,.0f} MiB",
        "- indexes (MiB): " + ", ".join(
            f"{name} {before.indexes.get(name, 0) / 2**20:,.1f} -> {b / 2**20:,.1f}"
            for name, b in after.indexes.items()),
    ]
