"""What only the PostgreSQL backend promises, on a real server: explicit and
concurrent migrations, transactional enqueue on the app's own connection, NOTIFY
wake-ups, the database's clock, and failing fast and clearly when the server is
unreachable or restarts.

Every test gets its own throw-away database (CONVEYOR_TEST_PG names the server,
default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import (
    SCHEMA_VERSION,
    Completion,
    FetchParams,
    HeldJob,
    JobFilter,
    JobInsert,
)
from conveyor.errors import BackendUnavailable, EnqueueError, SchemaError, SerializationError
from conveyor.types import JobState

psycopg = pytest.importorskip("psycopg")

from conveyor.backends.postgres.backend import PostgresBackend  # noqa: E402
from conveyor.backends.sql import load_migrations  # noqa: E402

MIGRATIONS = load_migrations("conveyor.backends.postgres")

pytestmark = pytest.mark.postgres

ADMIN_URL = os.environ.get("CONVEYOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {ADMIN_URL}: {str(exc).strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return ADMIN_URL


@contextlib.contextmanager
def new_database(admin_url: str) -> Iterator[str]:
    name = f"conveyor_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_url(pg_admin_url: str) -> Iterator[str]:
    """A new, empty database (no conveyor schema), dropped after the test."""
    with new_database(pg_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def migrated_url(pg_admin_url: str) -> Iterator[str]:
    with new_database(pg_admin_url) as url:
        backend = PostgresBackend(url)
        try:
            backend.migrate()
        finally:
            backend.close()
        yield url


@pytest.fixture
def url(migrated_url: str) -> str:
    """A database with the conveyor schema applied and no jobs or workers."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE conveyor_jobs, conveyor_workers, conveyor_job_steps, conveyor_job_context "
            "RESTART IDENTITY"
        )
    return migrated_url


@pytest.fixture
def make_backend(url: str) -> Iterator[Callable[..., PostgresBackend]]:
    """Backends on the test's database; each is like one more process or host."""
    built: list[PostgresBackend] = []

    def build(**settings: Any) -> PostgresBackend:
        backend = PostgresBackend(url, **settings)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        backend.close()


def job(task: str = "t", queue: str = "default", **options: Any) -> JobInsert:
    options.setdefault("args_json", "[[], {}]")
    options.setdefault("priority", 5)
    options.setdefault("max_attempts", 3)
    return JobInsert(task=task, queue=queue, **options)


def fetch(
    backend: PostgresBackend, queues: tuple[str, ...] = ("default",), limit: int = 10,
    lease: float = 30.0, worker: str = "w1",
) -> list[Any]:
    return backend.job_fetch(FetchParams(worker, queues, limit, lease))


def sql_count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


# -- schema -----------------------------------------------------------------------------


def test_migrate_from_two_threads_at_once_applies_the_schema_once(empty_url: str) -> None:
    backends = [PostgresBackend(empty_url) for _ in range(2)]
    start = threading.Barrier(len(backends))
    applied: list[list[tuple[int, str]]] = []
    errors: list[BaseException] = []

    def migrate(backend: PostgresBackend) -> None:
        start.wait()
        try:
            applied.append(backend.migrate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(b,)) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        assert sorted(len(a) for a in applied) == [0, len(MIGRATIONS)]
        assert sql_count(empty_url, "SELECT count(*) FROM conveyor_schema") == len(MIGRATIONS)
        for backend in backends:
            backend.schema_check()
    finally:
        for backend in backends:
            backend.close()


def test_schema_check_on_an_empty_database_says_run_conveyor_migrate(empty_url: str) -> None:
    backend = PostgresBackend(empty_url)
    try:
        with pytest.raises(SchemaError, match="run `conveyor migrate`"):
            backend.schema_check()
        # PostgreSQL is never migrated behind the operator's back: using it fails the same way.
        with pytest.raises(SchemaError, match="run `conveyor migrate`"):
            backend.job_insert_many([job()])
        with pytest.raises(SchemaError, match="run `conveyor migrate`"):
            fetch(backend)
    finally:
        backend.close()


def test_schema_check_refuses_a_database_from_a_newer_conveyor(empty_url: str) -> None:
    url = empty_url
    migrator = PostgresBackend(url)
    migrator.migrate()
    migrator.close()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO conveyor_schema (version, name) VALUES (%s, 'from_the_future.sql')",
            (SCHEMA_VERSION + 1,),
        )
    backend = PostgresBackend(url)
    try:
        with pytest.raises(SchemaError, match="upgrade conveyor"):
            backend.schema_check()
        with pytest.raises(SchemaError, match="upgrade conveyor"):
            backend.migrate()
    finally:
        backend.close()


def test_migrate_dry_run_prints_the_sql_and_changes_nothing(empty_url: str) -> None:
    app = Conveyor(empty_url)
    try:
        planned = app.migrate(dry_run=True)
        assert [version for version, _ in planned] == [m.version for m in MIGRATIONS]
        assert planned[-1][0] == SCHEMA_VERSION
        assert "CREATE TABLE conveyor_jobs" in planned[0][1]
        assert sql_count(
            empty_url,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'conveyor%%'",
        ) == 0
        with pytest.raises(SchemaError):
            app.backend.schema_check()

        assert app.migrate() == planned
        app.backend.schema_check()
        assert app.migrate(dry_run=True) == []
        assert app.migrate() == []
    finally:
        app.close()


def test_the_printed_sql_alone_makes_a_schema_conveyor_accepts(empty_url: str) -> None:
    """Teams that apply migrations with their own tool run exactly what --dry-run prints."""
    backend = PostgresBackend(empty_url)
    try:
        planned = backend.migrate(dry_run=True)
        with psycopg.connect(empty_url) as conn:
            for _, script in planned:
                conn.execute(script)
        backend.schema_check()
        assert backend.migrate() == []
    finally:
        backend.close()


def test_every_query_file_is_one_statement_with_well_formed_placeholders() -> None:
    folder = resources.files("conveyor.backends.postgres").joinpath("queries")
    names = [entry.name for entry in folder.iterdir() if entry.name.endswith(".sql")]
    assert names
    for name in names:
        text = folder.joinpath(name).read_text(encoding="utf-8")
        code = re.sub(r"'(?:[^']|'')*'", "''", text)  # string literals may hold anything
        code = "\n".join(line.split("--", 1)[0] for line in code.splitlines())
        assert ";" not in code.strip().rstrip(";"), f"{name} holds more than one statement"
        # psycopg reads every % (comments included) as a placeholder or an escape.
        stray = re.sub(r"%\(\w+\)s|%%", "", text)
        assert "%" not in stray, f"{name} has a % that is not a %(name)s placeholder"


# -- enqueue ----------------------------------------------------------------------------


def test_transactional_enqueue_exists_only_if_the_apps_transaction_commits(url: str) -> None:
    app = Conveyor(url)

    @app.task()
    def send(order: int) -> None: ...

    try:
        with psycopg.connect(url) as conn:
            rolled_back = send.using(connection=conn).enqueue(1)
            conn.rollback()
            committed = send.using(connection=conn).enqueue(2)
            # Until the commit, no worker can see (or run) the job.
            assert app.get_job(committed.id) is None
            assert fetch(app.backend) == []  # type: ignore[arg-type]
            conn.commit()
        assert app.get_job(rolled_back.id) is None
        found = app.get_job(committed.id)
        assert found is not None and found.record.args == [2]
        assert sql_count(url, "SELECT count(*) FROM conveyor_jobs") == 1
    finally:
        app.close()


def test_transactional_enqueue_on_an_autocommit_connection_is_all_or_nothing(url: str) -> None:
    backend = PostgresBackend(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            with pytest.raises(SerializationError):
                backend.job_insert_many([job(), job(args_json='[["\\u0000"], {}]')],
                                        connection=conn)
            results = backend.job_insert_many([job(), job()], connection=conn)
            # The batch committed (autocommit); the connection is left idle, not in a transaction.
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert [r.created for r in results] == [True, True]
        assert sql_count(url, "SELECT count(*) FROM conveyor_jobs") == 2
    finally:
        backend.close()


def test_connection_of_another_kind_is_refused_with_what_to_pass(url: str) -> None:
    backend = PostgresBackend(url)
    try:
        with pytest.raises(EnqueueError, match=r"psycopg \(3\) Connection"):
            backend.job_insert_many([job()], connection=sqlite3.connect(":memory:"))
    finally:
        backend.close()
    assert sql_count(url, "SELECT count(*) FROM conveyor_jobs") == 0


def test_a_failed_transaction_on_the_apps_connection_is_named(url: str) -> None:
    backend = PostgresBackend(url)
    try:
        with psycopg.connect(url) as conn:
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("SELECT * FROM no_such_table_here")
            with pytest.raises(EnqueueError, match="roll it back"):
                backend.job_insert_many([job()], connection=conn)
    finally:
        backend.close()


def test_enqueue_many_keeps_input_order_with_and_without_keys(make_backend: Any) -> None:
    backend = make_backend()
    first = backend.job_insert_many([job(task="a", idempotency_key="k")])[0]
    batch = [
        job(task="p0"),
        job(task="a", idempotency_key="k"),
        job(task="p1", delay=60),
        job(task="b", idempotency_key="k"),
        job(task="p2"),
        job(task="b", idempotency_key="k"),
    ]
    results = backend.job_insert_many(batch)
    assert results[1].id == first.id and not results[1].created
    assert results[5].id == results[3].id and not results[5].created
    assert [r.created for r in results] == [True, False, True, True, True, False]
    for spec, result in zip(batch, results, strict=True):
        record = backend.job_get(result.id)
        assert record is not None and record.task == spec.task
    assert results[2].state == JobState.SCHEDULED
    plain = [results[i].id for i in (0, 2, 4)]
    assert plain == sorted(plain)


def test_racing_threads_with_one_idempotency_key_make_one_job(make_backend: Any) -> None:
    backends = [make_backend() for _ in range(8)]
    start = threading.Barrier(len(backends))
    ids: list[int] = []
    errors: list[BaseException] = []

    def enqueue(backend: PostgresBackend) -> None:
        start.wait()
        try:
            for _ in range(5):
                ids.append(backend.job_insert_many([job(idempotency_key="once")])[0].id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(b,)) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(ids) == 40 and len(set(ids)) == 1
    assert sql_count(backends[0].url, "SELECT count(*) FROM conveyor_jobs") == 1


def test_what_jsonb_cannot_store_is_refused_in_arguments_and_replaced_in_results(
    make_backend: Any,
) -> None:
    backend = make_backend()
    with pytest.raises(SerializationError, match="NUL"):
        backend.job_insert_many([job(args_json='[["a\\u0000b"], {}]')])
    with pytest.raises(SerializationError, match="surrogate"):
        backend.job_insert_many([job(args_json=json.dumps([["name\udc80.txt"], {}]))])
    with pytest.raises(SerializationError, match="NUL"):
        backend.job_insert_many([job(queue="q\x00")])
    with pytest.raises(SerializationError, match="NUL"):
        backend.job_insert_many([job(tags=["\udc80"])])
    assert sql_count(backend.url, "SELECT count(*) FROM conveyor_jobs") == 0
    # A literal backslash-u is not a NUL and is stored as given.
    created = backend.job_insert_many([job(args_json='[["\\\\u0000"], {}]')])[0]
    [leased] = fetch(backend)
    assert leased.id == created.id and leased.args == ["\\u0000"]
    applied = backend.job_complete_many(
        [Completion(leased.id, leased.lease_token, "succeeded",
                    result_json=json.dumps(["x\x00y", "\udc80", "\U0001f600"]))]
    )
    assert applied == [leased.id]
    record = backend.job_get(leased.id)
    assert record is not None and record.state == JobState.SUCCEEDED
    assert record.result == ["x\ufffdy", "\ufffd", "\U0001f600"]


# -- fetch ------------------------------------------------------------------------------


def test_fetch_returns_jobs_in_fair_pick_order_across_queues(make_backend: Any) -> None:
    backend = make_backend()
    backend.job_insert_many([job(task=f"bulk{i}", queue="bulk") for i in range(5)])
    backend.job_insert_many([job(task="urgent-low", queue="urgent", priority=9)])
    backend.job_insert_many([job(task="urgent-high", queue="urgent", priority=0)])
    picked = fetch(backend, ("urgent", "bulk", "urgent"), limit=5)
    assert [r.task for r in picked] == ["urgent-high", "bulk0", "urgent-low", "bulk1", "bulk2"]
    assert all(r.state == JobState.RUNNING and r.attempt == 1 for r in picked)


def test_concurrent_fetchers_never_get_the_same_job(make_backend: Any) -> None:
    backend = make_backend()
    backend.job_insert_many([job(task=f"j{i}") for i in range(300)])
    fetchers = [make_backend() for _ in range(6)]
    start = threading.Barrier(len(fetchers))
    got: list[int] = []
    lock = threading.Lock()

    def drain(index: int, b: PostgresBackend) -> None:
        start.wait()
        while True:
            records = fetch(b, limit=7, worker=f"w{index}")
            if not records:
                return
            with lock:
                got.extend(r.id for r in records)

    threads = [threading.Thread(target=drain, args=(i, b)) for i, b in enumerate(fetchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(got) == 300 and len(set(got)) == 300


def test_fetch_and_leases_use_the_database_clock_not_the_hosts(
    make_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = make_backend()
    # This host's clock is a day off; the database's decisions must not notice.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400.0)

    before = backend.now()
    assert abs(time.time() - before) > 80_000  # the host really is a day off
    due, later = backend.job_insert_many([job(task="due"), job(task="later", delay=60.0)])
    soon = backend.job_insert_many([job(task="soon", run_at=backend.now() + 1.5)])[0]

    picked = fetch(backend, lease=20.0)
    after = backend.now()
    assert [r.id for r in picked] == [due.id]
    leased = picked[0]
    assert leased.started_at is not None and leased.lease_expires_at is not None
    assert before <= leased.started_at.timestamp() <= after
    assert (leased.lease_expires_at - leased.started_at).total_seconds() == pytest.approx(20.0)
    scheduled = backend.job_get(later.id)
    assert scheduled is not None and scheduled.state == JobState.SCHEDULED
    assert (scheduled.run_at - scheduled.created_at).total_seconds() == pytest.approx(60.0)

    # "soon" is fetched once the database's clock has passed its run_at, not before.
    soon_record = backend.job_get(soon.id)
    assert soon_record is not None and soon_record.state == JobState.SCHEDULED
    deadline = time.monotonic() + 10.0
    while not (picked := fetch(backend)):
        assert time.monotonic() < deadline, "the scheduled job never became due"
        time.sleep(0.05)
    assert [r.id for r in picked] == [soon.id]
    assert picked[0].started_at is not None
    assert picked[0].started_at >= soon_record.run_at

    # A fresh lease is not rescued, whatever this host's clock says.
    assert backend.job_rescue() == []


def test_heartbeat_release_and_complete_are_fenced_by_owner_and_token(make_backend: Any) -> None:
    backend = make_backend()
    a, b = backend.job_insert_many([job(task="a"), job(task="b")])
    ra, rb = fetch(backend, lease=30.0)
    assert backend.job_heartbeat("someone-else", [HeldJob(ra.id, ra.lease_token)], 60.0) == []
    assert backend.job_heartbeat("w1", [HeldJob(ra.id, ra.lease_token + 1)], 60.0) == []
    kept = backend.job_heartbeat(
        "w1", [HeldJob(ra.id, ra.lease_token), HeldJob(rb.id, rb.lease_token)], 60.0
    )
    assert sorted(kept) == sorted([a.id, b.id])
    assert backend.job_release_many("w1", [HeldJob(rb.id, rb.lease_token)]) == [b.id]
    released = backend.job_get(b.id)
    assert released is not None and released.state == JobState.AVAILABLE
    assert released.attempt == 0
    again = fetch(backend, worker="w2")
    assert [r.id for r in again] == [b.id] and again[0].lease_token == rb.lease_token + 1
    # The first worker's late completion of b changes nothing.
    assert backend.job_complete_many(
        [Completion(b.id, rb.lease_token, "succeeded", result_json="1"),
         Completion(a.id, ra.lease_token, "retry", error_json=_error(1), retry_delay=30.0)]
    ) == [a.id]
    retried = backend.job_get(a.id)
    assert retried is not None and retried.state == JobState.SCHEDULED
    assert [e.message for e in retried.errors] == ["boom"]


def _error(attempt: int) -> str:
    return (
        f'{{"attempt": {attempt}, "type": "builtins.ValueError", "message": "boom", '
        '"traceback": "", "worker": "w1", "at": 0}'
    )


# -- waking -----------------------------------------------------------------------------


def test_notify_wakes_a_waiting_worker_within_milliseconds(make_backend: Any) -> None:
    waiter, producer = make_backend(), make_backend()
    waiter.wait_for_work(0.01)  # LISTEN is set up on the first wait

    def enqueue_later() -> None:
        time.sleep(0.2)
        producer.job_insert_many([job()])

    thread = threading.Thread(target=enqueue_later)
    started = time.monotonic()
    thread.start()
    waiter.wait_for_work(5.0)
    waited = time.monotonic() - started
    thread.join()
    assert 0.15 <= waited < 1.0


def test_notify_is_sent_only_when_the_enqueuing_transaction_commits(make_backend: Any) -> None:
    waiter = make_backend()
    backend = make_backend()
    waiter.wait_for_work(0.01)
    with psycopg.connect(backend.url) as conn:
        backend.job_insert_many([job()], connection=conn)
        started = time.monotonic()
        waiter.wait_for_work(0.5)
        assert time.monotonic() - started >= 0.45  # not woken by uncommitted work
        conn.commit()
    started = time.monotonic()
    waiter.wait_for_work(5.0)
    assert time.monotonic() - started < 1.0


def test_wait_for_work_recovers_after_the_server_drops_every_connection(
    make_backend: Any,
) -> None:
    """What a PostgreSQL restart does to a worker: every connection is cut."""
    backend, producer = make_backend(), make_backend()
    backend.job_insert_many([job()])
    backend.wait_for_work(0.01)
    with psycopg.connect(backend.url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    time.sleep(0.1)
    # The pool drops the dead connections instead of failing the next call.
    assert len(fetch(backend)) == 1
    backend.wait_for_work(0.05)  # notices the cut LISTEN connection
    backend.wait_for_work(0.05)  # listens again

    def enqueue_later() -> None:
        time.sleep(0.2)
        producer.job_insert_many([job()])

    thread = threading.Thread(target=enqueue_later)
    started = time.monotonic()
    thread.start()
    backend.wait_for_work(5.0)
    thread.join()
    assert time.monotonic() - started < 1.0


def test_enqueue_after_the_server_dropped_its_pooled_connections_stores_each_job_once(
    url: str,
) -> None:
    """Enqueues check a pooled connection without a round trip; a connection the
    server has closed (what a restart does) is still replaced before it is used,
    so the caller sees neither an error nor a lost or doubled job."""
    app = Conveyor(url)

    @app.task()
    def work(n: int) -> int:
        return n

    try:
        ids = [work.enqueue(0).id]
        for round_ in range(1, 4):
            with psycopg.connect(url, autocommit=True) as admin:
                # Waits until every other backend has exited (and said goodbye).
                admin.execute(
                    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ids.append(work.enqueue(round_).id)  # one job, due now: a single statement
            ids += [j.id for j in work.enqueue_many([(round_,), (round_,)])]
            ids.append(work.using(delay=60).enqueue(round_).id)  # in a transaction
        stored = sorted(r.id for r in app.backend.job_list(JobFilter()))
    finally:
        app.close()
    assert len(ids) == len(set(ids)) == 13
    assert stored == sorted(ids)


def test_a_worker_survives_the_server_dropping_every_connection_mid_run(url: str) -> None:
    app = Conveyor(url, lease=2.0, poll_interval=0.05)
    ran: list[int] = []

    @app.task()
    def work(n: int) -> int:
        time.sleep(0.01)
        ran.append(n)
        return n

    worker = app.worker(concurrency=4, install_signals=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        jobs = []
        for round_ in range(3):
            jobs += [work.enqueue(round_ * 20 + i) for i in range(20)]
            time.sleep(0.05)
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        results = [j.wait(30) for j in jobs]
    finally:
        worker.stop()
        thread.join(30)
        app.close()
    assert results == list(range(60))
    assert set(ran) == set(range(60))


# -- failing well -----------------------------------------------------------------------


def test_unreachable_server_raises_not_stored_within_the_enqueue_deadline() -> None:
    app = Conveyor("postgresql://postgres@127.0.0.1:1/x", connect_timeout=2.0)

    @app.task()
    def f() -> None: ...

    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1") as raised:
            f.enqueue()
    finally:
        app.close()
    assert time.monotonic() - started < 1.0 + 1.0  # unreachable_timeout, not the connect one
    assert "check that the server is running" in str(raised.value)
    assert "NOT stored" in str(raised.value)


def test_a_closed_backend_says_so(url: str) -> None:
    backend = PostgresBackend(url)
    backend.close()
    with pytest.raises(Exception, match="closed"):
        backend.job_get(1)


def test_delete_and_prune_touch_only_finished_jobs(make_backend: Any) -> None:
    backend = make_backend()
    done, failed, waiting, cancelled = backend.job_insert_many(
        [job(task="done"), job(task="failed", max_attempts=1), job(task="waiting", delay=60),
         job(task="cancelled")]
    )
    assert backend.job_cancel(cancelled.id)
    assert not backend.job_cancel(cancelled.id)
    leased = {r.task: r for r in fetch(backend)}
    assert sorted(backend.job_complete_many([
        Completion(done.id, leased["done"].lease_token, "succeeded", "null"),
        Completion(failed.id, leased["failed"].lease_token, "dead", error_json=_error(1)),
    ])) == sorted([done.id, failed.id])
    assert backend.job_prune(older_than=3600.0) == 0
    assert backend.job_prune(older_than=0.0) == 2  # succeeded and cancelled; dead jobs stay
    assert backend.job_get(done.id) is None and backend.job_get(cancelled.id) is None
    assert backend.job_delete(JobFilter()) == 1  # every finished state by default: the dead one
    assert [r.id for r in backend.job_list(JobFilter())] == [waiting.id]
    assert backend.job_delete(JobFilter(states=[JobState.SCHEDULED])) == 0
