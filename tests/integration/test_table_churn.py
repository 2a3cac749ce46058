"""Schema 15: the job table stays short in front of the fetch whatever its history.

Every transition is an UPDATE, so on PostgreSQL a drained job leaves dead row
versions whose index entries every later fetch walks past until a vacuum removes
them. The maintenance leader vacuums the table itself once enough have piled up
(autovacuum may be off, as on this CI server, or behind). Schema 15 changes only
storage parameters, so it migrates a table full of jobs in place.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import Completion, FetchParams, HeldJob, JobInsert
from conveyor.worker import maintenance as maintenance_module
from conveyor.worker.maintenance import Maintenance
from conveyor.worker.settings import WorkerSettings
from conveyor.worker.stats import WorkerStats
from tests.conftest import PG_ADMIN_URL


def _leader(app: Conveyor) -> Maintenance:
    settings = WorkerSettings.build(
        default_queue="default", default_lease=2.0, default_poll_interval=0.05,
        worker_id="leader",
    )
    return Maintenance(settings=settings, backend=app.backend, retention=3600.0, cron=None,
                       stats=WorkerStats(), stopping=threading.Event())


def _vacuum_count(url: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables "
                           "WHERE relid = 'conveyor_jobs'::regclass").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_the_leader_vacuums_the_job_table_once_dead_versions_pile_up(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task()
    def noop() -> None: ...

    noop.enqueue_many(() for _ in range(300))
    postgres = app.url.startswith("postgresql")
    if postgres:
        import psycopg

        # Two transitions' worth of dead versions, from a connection that closes (a
        # backend reports its table counts to the statistics when it exits).
        with psycopg.connect(app.url, autocommit=True) as conn:
            for _ in range(2):
                conn.execute("UPDATE conveyor_jobs SET priority = priority")
        before, dead = _vacuum_count(app.url)
        assert dead >= 600
    # Below the threshold nothing runs; the check is not the vacuum.
    assert app.backend.job_vacuum(10**9) is False
    monkeypatch.setattr(maintenance_module, "VACUUM_MIN_DEAD", 500)
    monkeypatch.setattr(maintenance_module, "VACUUM_CHECK", 0.0)
    leader = _leader(app)
    leader.run(every=0)
    assert leader.leading
    thread = leader._vacuum
    assert thread is not None  # the vacuum runs beside the fetch loop, not in it
    thread.join(timeout=30)
    assert not thread.is_alive()
    if postgres:
        after, dead = _vacuum_count(app.url)
        assert leader.stats.vacuums == 1 and after == before + 1 and dead == 0
        # Nothing left to reclaim: the next check does not vacuum again.
        assert app.backend.job_vacuum(500) is False
    else:  # SQLite rewrites rows in place: nothing to reclaim, nothing run
        assert leader.stats.vacuums == 0
    leader.resign()


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"conveyor_churn_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_migration_15_keeps_a_table_of_jobs_in_every_state_and_its_promises(
    empty_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from conveyor.backends.postgres import backend as module

    # A database with every migration but 15 (the code's queries need the later
    # columns), holding jobs in every state; then 15 is applied to it.
    real = list(module._MIGRATIONS)
    older = [m for m in real if m.version != 15]
    monkeypatch.setattr(module, "_MIGRATIONS", older)
    old: Any = module.PostgresBackend(empty_pg_url)
    old.migrate()
    jobs = old.job_insert_many([
        JobInsert("t", "q", "[[1], {}]", 5, 3, idempotency_key="k1", idempotency_window=3600.0),
        JobInsert("t", "q", "[[2], {}]", 5, 1),
        JobInsert("t", "q", "[[3], {}]", 5, 1),
        JobInsert("t", "q", "[[4], {}]", 5, 1, delay=3600.0),
    ])
    leased = old.job_fetch(FetchParams("w", ["q"], 3, 30))
    by_id = {j.id: j for j in leased}
    first, second = jobs[0].id, jobs[1].id
    old.job_complete_many([
        Completion(first, by_id[first].lease_token, "succeeded", result_json="[1]"),
        Completion(second, by_id[second].lease_token, "dead",
                   error_json='{"attempt": 1, "type": "E", "message": "x", "at": 0}'),
    ])  # the third stays running, the fourth scheduled
    before = {j.id: old.job_get(j.id) for j in jobs}
    old.close()

    monkeypatch.setattr(module, "_MIGRATIONS", real)
    backend: Any = module.PostgresBackend(empty_pg_url)
    try:
        assert [v for v, _ in backend.migrate()] == [15]
        backend.schema_check()
        with psycopg.connect(empty_pg_url) as conn:
            options = conn.execute("SELECT reloptions FROM pg_class "
                                   "WHERE oid = 'conveyor_jobs'::regclass").fetchone()
        assert options is not None and "autovacuum_vacuum_cost_delay=0" in options[0]
        assert {j.id: backend.job_get(j.id) for j in jobs} == before
        # The running job's lease still fences; its holder still completes it.
        third = by_id[jobs[2].id]
        assert backend.job_complete_many(
            [Completion(third.id, third.lease_token + 1, "succeeded", result_json="[]")]) == []
        assert backend.job_complete_many(
            [Completion(third.id, third.lease_token, "succeeded", result_json="[]")]) == [third.id]
        # A finished job's idempotency key still holds across the migration.
        [again] = backend.job_insert_many([JobInsert("t", "q", "[[9], {}]", 5, 1,
                                                     idempotency_key="k1")])
        assert again.id == first and not again.created
    finally:
        backend.close()


@pytest.mark.postgres
def test_a_worker_stops_fetching_while_its_completions_cannot_be_written(
    pg_database: str,
) -> None:
    """Completions blocked (the stats rows every completion writes, held): the
    worker finishes what it holds, then waits instead of leasing the whole backlog."""
    import psycopg

    from tests.conftest import _pg_truncate

    _pg_truncate(pg_database)
    app = Conveyor(pg_database, poll_interval=0.05, lease=30.0)
    try:
        @app.task()
        def noop() -> None: ...

        noop.enqueue_many(() for _ in range(2_000))
        worker = app.worker(install_signals=False, concurrency=4, prefetch=4)
        thread = threading.Thread(target=worker.run)
        with psycopg.connect(pg_database) as blocker:
            # Every completion adds to its minute's stats row (one per connection
            # shard): hold those rows, for this minute and the next, in a transaction.
            blocker.execute(
                "INSERT INTO conveyor_job_stats (minute, queue, task, shard) "
                "SELECT date_trunc('minute', now()) + m * interval '1 minute', 'default', "
                "%s, s FROM generate_series(0, 1) AS m, generate_series(0, 7) AS s",
                [noop.name],
            )
            thread.start()
            deadline = time.monotonic() + 20
            while worker.stats.fetched < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # unbounded, the fetch loop would lease hundreds meanwhile
            fetched_while_blocked = worker.stats.fetched
            with psycopg.connect(pg_database, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM conveyor_jobs "
                                   "WHERE state = 'running'").fetchone()
            assert row is not None
            # Slots + prefetch awaiting completion, plus at most one more fill of both.
            assert 8 <= fetched_while_blocked <= 16 and row[0] <= 16
        deadline = time.monotonic() + 60
        while worker.stats.succeeded < 2_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        worker.stop()
        thread.join(30)
        assert not thread.is_alive()
        assert worker.stats.succeeded == 2_000 and worker.stats.lost == 0
    finally:
        app.close()


@pytest.mark.postgres
def test_completions_and_heartbeats_look_their_jobs_up_by_key_whatever_the_statistics_say(
    empty_pg_url: str,
) -> None:
    """Statistics taken while no job ran (a quiet moment, or a large table in which the
    running few are not sampled) once made the planner walk the leases index (every
    running job of every worker) and compare each with every entry of the batch:
    running jobs x batch size per completion and heartbeat. The batch drives both now,
    one primary-key lookup per job, and fencing is unchanged."""
    import psycopg

    from conveyor.backends.postgres.backend import _Q, PostgresBackend

    backend = PostgresBackend(empty_pg_url)
    try:
        backend.migrate()
        backend.job_insert_many([JobInsert("t", "q", "[[], {}]", 5, 1) for _ in range(3000)])
        with psycopg.connect(empty_pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE conveyor_jobs")  # nothing running: 'running' unseen
        mine = backend.job_fetch(FetchParams("w1", ["q"], 400, 30))
        theirs = backend.job_fetch(FetchParams("w2", ["q"], 400, 30))
        batch = [Completion(j.id, j.lease_token, "succeeded", result_json="null")
                 for j in mine[:200]]
        completions = json.dumps([
            {"job_id": c.job_id, "lease_token": c.lease_token, "outcome": c.outcome,
             "result": c.result_json, "error": None, "retry_delay": 0.0} for c in batch])
        with psycopg.connect(empty_pg_url) as conn:
            plans = {
                name: "\n".join(row[0] for row in conn.execute(
                    "EXPLAIN (COSTS OFF) " + _Q[name], params))  # type: ignore[arg-type]
                for name, params in (
                    ("job_complete", {"completions": completions}),
                    ("job_heartbeat", {"worker_id": "w1", "ids": [j.id for j in mine],
                                       "tokens": [j.lease_token for j in mine],
                                       "lease_seconds": 30.0}),
                )
            }
        for name, plan in plans.items():
            assert "conveyor_jobs_leases" not in plan, (name, plan)
            assert "Join Filter" not in plan, (name, plan)
            assert "conveyor_jobs_pkey" in plan, (name, plan)
        # Fencing as before: a stale token, or another worker's job, changes nothing.
        stale = Completion(mine[200].id, mine[200].lease_token - 1, "succeeded",
                           result_json="null")
        done = backend.job_complete_many([*batch, stale])
        assert sorted(done) == sorted(c.job_id for c in batch)
        kept = backend.job_heartbeat(
            "w1", [HeldJob(j.id, j.lease_token) for j in [*mine, theirs[0]]], 30.0)
        assert sorted(kept) == sorted(j.id for j in mine[200:])
    finally:
        backend.close()
