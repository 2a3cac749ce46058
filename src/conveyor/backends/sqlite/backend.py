"""The SQLite backend: one file, zero set-up, many threads and processes on one host.

SQLite allows one writer at a time. Every write here is a short `BEGIN
IMMEDIATE` transaction (so two writers queue on the busy timeout instead of
failing on a lock upgrade), the file is in WAL mode (readers never block the
writer) with `synchronous=FULL` (an acknowledged enqueue survives power loss),
and work is batched: one transaction per fetch, per batch of completions, per
heartbeat. Each thread has its own connection.

The clock: on one host the process clock is the database's clock, so "now" is
read from the backend's `Clock` and passed into every statement.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from conveyor.backends.base import (
    AUDIT_PRUNE_BATCH,
    SCHEMA_VERSION,
    AlertState,
    ApiToken,
    AuditEntry,
    AuditFilter,
    AuditRecord,
    Completion,
    FetchParams,
    HeldJob,
    InsertResult,
    JobFilter,
    JobInsert,
    JobStats,
    QueuePause,
    QueueStats,
    Role,
    SendGate,
    StatsQuery,
    Throughput,
    TokenInsert,
    WorkerInfo,
)
from conveyor.backends.records import (
    audit_entry_from_row,
    dumps,
    interleave,
    job_record_from_row,
    job_stats_from_row,
)
from conveyor.backends.sql import load_migrations, load_queries
from conveyor.clock import Clock, SystemClock
from conveyor.errors import BackendError, ConfigurationError, EnqueueError, SchemaError
from conveyor.types import FINISHED_STATES, JobRecord, JobState

log = logging.getLogger("conveyor.sqlite")

_Q = load_queries("conveyor.backends.sqlite")
_MIGRATIONS = load_migrations("conveyor.backends.sqlite")

# The WAL-reset bug (database corruption when two connections checkpoint and
# write at the same moment) is fixed in 3.51.3 and backported to 3.44.6 and 3.50.7.
_WAL_RESET_FIXED = ((3, 51, 3), (3, 50, 7), (3, 44, 6))
_warned_versions: set[str] = set()


def sqlite_has_wal_reset_bug(version: str) -> bool:
    parts = tuple(int(p) for p in version.split(".")[:3])
    major_minor = parts[:2]
    for fixed in _WAL_RESET_FIXED:
        if major_minor == fixed[:2]:
            return parts < fixed
    return parts < _WAL_RESET_FIXED[0]


def _warn_sqlite_version() -> None:
    version = sqlite3.sqlite_version
    if version in _warned_versions or not sqlite_has_wal_reset_bug(version):
        return
    _warned_versions.add(version)
    message = (
        f"SQLite {version} has the WAL-reset bug (rare corruption when two connections write "
        "or checkpoint one file at the same moment; fixed in 3.51.3, 3.50.7 and 3.44.6). "
        "conveyor serialises its own writes with a lock file to avoid it; other programs "
        "writing the same file are not covered. Prefer a Python built with a newer SQLite."
    )
    log.warning(message)


class WriteGuard:
    """Serialises conveyor's writes to one SQLite file across threads and processes.

    SQLite admits one writer at a time anyway, so this costs no throughput; on a
    SQLite with the WAL-reset bug it removes the bug's precondition (two
    connections writing or checkpointing at the same moment: auto-checkpoints
    run inside COMMIT, which happens under this guard). A thread lock orders the
    threads of this process; `flock` on a sidecar file orders the processes, and
    the kernel drops it if its holder dies.
    """

    def __init__(self, db_path: str, *, enabled: bool) -> None:
        self.enabled = enabled
        self._thread_lock = threading.Lock()
        self._lock_path = os.path.abspath(db_path) + "-conveyor.lock"
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if not self._thread_lock.acquire(timeout=timeout):
            raise BackendError(
                f"another thread held the SQLite write lock for over {timeout}s: a long "
                "transaction is running; keep transactions short or raise busy_timeout"
            )
        try:
            if self._fd is None:
                self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + timeout
            pause = 0.0002
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise BackendError(
                            f"another process held {self._lock_path} for over {timeout}s: a "
                            "worker is stuck (SIGSTOP?) inside a write; stop it or raise "
                            "busy_timeout"
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.005)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def parse_sqlite_url(url: str) -> tuple[str, dict[str, str]]:
    """`sqlite:///relative.db`, `sqlite:////absolute.db` -> (path, options)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise ConfigurationError(
            f"bad SQLite URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigurationError(f"SQLite URL {url!r} names no file: write sqlite:///conveyor.db")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    return path, options


class SQLiteBackend:
    supports_notify = False

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        self.url = url
        self.path, options = parse_sqlite_url(url)
        self.clock: Clock = clock or SystemClock()
        self.busy_timeout = float(options.pop("busy_timeout", "30"))
        self.synchronous = options.pop("synchronous", "full").upper()
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigurationError(
                f"synchronous={self.synchronous.lower()} is not allowed: use full, extra or normal"
            )
        if options:
            raise ConfigurationError(
                f"unknown SQLite URL options {sorted(options)}: known are busy_timeout, synchronous"
            )
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._ready = False
        self._wake = threading.Condition()
        self._wake_generation = 0
        self._closed = False
        self._guard = WriteGuard(
            self.path, enabled=sqlite_has_wal_reset_bug(sqlite3.sqlite_version)
        )

    # -- connections ----------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigurationError(
                f"the folder of the SQLite file {self.path!r} does not exist: create {directory}"
            )
        _warn_sqlite_version()
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        with self._guard.hold(self.busy_timeout):
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._connections.append((threading.current_thread(), conn))
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise BackendError("this conveyor backend is closed")
            conn = self._connect()
            self._local.conn = conn
            if not self._ready:
                self._ensure_schema(conn)
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Zero set-up: the SQLite file is created and migrated on first use."""
        with self._lock:
            if self._ready:
                return
            self._migrate(conn, dry_run=False)
            self._ready = True

    @contextlib.contextmanager
    def _write(
        self, conn: sqlite3.Connection | None = None, *, timeout: float | None = None
    ) -> Iterator[sqlite3.Connection]:
        """One short write transaction. Waits for the lock instead of failing (up to
        `timeout` seconds when given, else the busy timeout)."""
        conn = conn or self._conn
        if timeout is None:
            with self._guard.hold(self.busy_timeout), self._transaction(conn):
                yield conn
            return
        started = time.monotonic()
        with self._guard.hold(timeout):
            left = max(0.001, timeout - (time.monotonic() - started))
            conn.execute(f"PRAGMA busy_timeout = {int(left * 1000)}")
            try:
                with self._transaction(conn, timeout=left):
                    yield conn
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    @contextlib.contextmanager
    def _transaction(
        self, conn: sqlite3.Connection, *, timeout: float | None = None
    ) -> Iterator[sqlite3.Connection]:
        deadline = time.monotonic() + (self.busy_timeout if timeout is None else timeout)
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                # The busy timeout already waited; under a long writer keep trying
                # until our own deadline so "database is locked" never reaches a user.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise translate_error(exc) from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise translate_error(exc) from exc

    def _read(self, sql: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc

    # -- schema -----------------------------------------------------------------
    def _migrate(self, conn: sqlite3.Connection, *, dry_run: bool) -> list[tuple[int, str]]:
        with self._write(conn):
            conn.execute(_Q["schema_table_create"])
            applied = {int(row[0]) for row in conn.execute(_Q["schema_versions"])}
            current = max(applied, default=0)
            if current > SCHEMA_VERSION:
                raise SchemaError(
                    f"the database {self.path} is at schema {current}, newer than this conveyor "
                    f"knows ({SCHEMA_VERSION}): upgrade conveyor"
                )
            # Every migration not yet recorded, not only those above the highest: numbers
            # are reserved per feature, so a lower one can arrive after a higher one.
            pending = [m for m in _MIGRATIONS if m.version not in applied]
            if not dry_run:
                for migration in pending:
                    # executescript would COMMIT our transaction; run statement by statement.
                    for statement in _split_statements(migration.sql):
                        conn.execute(statement)
                    conn.execute(
                        _Q["schema_version_record"],
                        {"version": migration.version, "name": migration.name,
                         "now": self.clock.now()},
                    )
        return [(m.version, m.sql) for m in pending]

    def migrate(self, *, dry_run: bool = False) -> list[tuple[int, str]]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        applied = self._migrate(conn, dry_run=dry_run)
        if not dry_run:
            self._ready = True
        return applied

    def schema_check(self) -> None:
        rows = self._read(_Q["schema_version"], {})
        if rows[0][0] != SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path} is at schema {rows[0][0]}, this conveyor needs {SCHEMA_VERSION}: "
                "run `conveyor migrate`"
            )

    # -- enqueue --------------------------------------------------------------
    def job_insert_many(
        self, jobs: Sequence[JobInsert], *, connection: Any = None, gate: SendGate | None = None
    ) -> list[InsertResult]:
        if connection is not None:
            conn = self._check_foreign_connection(connection)
            try:
                results = self._insert(conn, jobs)
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
            return results
        timeout = None
        if gate is not None and gate.deadline is not None:
            timeout = max(0.001, gate.deadline - time.monotonic())
        with self._write(timeout=timeout) as conn:
            if gate is not None:  # the write lock is ours: the rest is local and quick
                gate.sending()
            results = self._insert(conn, jobs)
        self._notify_local()
        return results

    def job_find_client_id(self, client_id: str) -> int | None:
        rows = self._read(_Q["job_by_client_ids"], {"client_ids": dumps([client_id])})
        return int(rows[0]["id"]) if rows else None

    def job_resolve(
        self, jobs: Sequence[JobInsert], *, stop_session: int | None = None
    ) -> list[InsertResult | None]:
        ids = [job.client_id for job in jobs if job.client_id is not None]
        found = {
            str(row["client_id"]): InsertResult(int(row["id"]), True, JobState(row["state"]))
            for row in self._read(_Q["job_by_client_ids"], {"client_ids": dumps(ids)})
        }
        results: list[InsertResult | None] = []
        for job in jobs:
            result = found.get(job.client_id) if job.client_id is not None else None
            if result is None and job.idempotency_key is not None:
                rows = self._read(
                    _Q["job_by_idempotency_key"],
                    {"task": job.task, "idempotency_key": job.idempotency_key},
                )
                if rows:
                    result = InsertResult(int(rows[0]["id"]), False, JobState(rows[0]["state"]))
            results.append(result)
        return results

    def _insert(self, conn: sqlite3.Connection, jobs: Sequence[JobInsert]) -> list[InsertResult]:
        now = self.clock.now()
        results: list[InsertResult] = []
        insert = _Q["job_insert"]
        for job in jobs:
            run_at = job.run_at if job.run_at is not None else now + job.delay
            params = {
                "task": job.task,
                "queue": job.queue,
                "args": job.args_json,
                "priority": job.priority,
                "run_at": run_at,
                "max_attempts": job.max_attempts,
                "idempotency_key": job.idempotency_key,
                "idempotency_window": job.idempotency_window,
                "group_key": job.group_key,
                "timeout": job.timeout,
                "now": now,
                "tags": dumps(list(job.tags)),
                "trace_context": job.trace_context,
                "client_id": job.client_id,
            }
            if job.idempotency_key is not None:
                conn.execute(_Q["idempotency_release"], params)
            row = conn.execute(insert, params).fetchone()
            # Positional access: the caller's connection may use any row factory.
            if row is not None:
                results.append(InsertResult(int(row[0]), True, JobState(row[1])))
                continue
            existing = conn.execute(_Q["job_by_idempotency_key"], params).fetchone()
            if existing is None:  # pragma: no cover - the unique index guarantees a row
                raise BackendError("idempotent insert found neither a new nor an existing job")
            results.append(InsertResult(int(existing[0]), False, JobState(existing[1])))
        return results

    def _check_foreign_connection(self, connection: Any) -> sqlite3.Connection:
        if not isinstance(connection, sqlite3.Connection):
            raise EnqueueError(
                f"connection= must be a sqlite3.Connection for the SQLite backend, got "
                f"{type(connection).__name__}"
            )
        row = connection.execute("PRAGMA database_list").fetchone()
        theirs = os.path.realpath(row[2]) if row and row[2] else ""
        if theirs != os.path.realpath(self.path):
            raise EnqueueError(
                f"connection= is open on {theirs or 'an in-memory database'!r} but this app "
                f"stores jobs in {os.path.realpath(self.path)!r}: open the app's database file"
            )
        if not self._ready:
            self._conn  # noqa: B018 - creates the schema on first use
        return connection

    # -- worker side ------------------------------------------------------------
    def job_fetch(self, params: FetchParams) -> list[JobRecord]:
        if params.limit <= 0:
            return []
        with self._write() as conn:
            now = self.clock.now()
            conn.execute(_Q["job_stage"], {"now": now})
            candidates = [
                [row[0] for row in conn.execute(
                    _Q["job_fetch_candidates"], {"queue": queue, "limit": params.limit}
                )]
                for queue in params.queues
            ]
            picked = interleave(candidates, params.limit)
            if not picked:
                return []
            rows = conn.execute(
                _Q["job_lease"],
                {"ids": dumps(picked), "worker_id": params.worker_id, "now": now,
                 "lease_seconds": params.lease_seconds},
            ).fetchall()
        order = {job_id: i for i, job_id in enumerate(picked)}
        records = [job_record_from_row(row) for row in rows]
        records.sort(key=lambda r: order[r.id])
        return records

    def job_complete_many(self, completions: Sequence[Completion]) -> list[int]:
        if not completions:
            return []
        applied: list[int] = []
        with self._write() as conn:
            now = self.clock.now()
            # Counted first, over the rows the updates below will change, in this transaction.
            conn.execute(
                _Q["stats_record_completions"],
                {"minute": _minute(now), "now": now,
                 "done": dumps([[c.job_id, c.lease_token, c.outcome] for c in completions])},
            )
            for c in completions:
                query = {"succeeded": "job_succeed", "retry": "job_retry_later", "dead": "job_kill"}
                row = conn.execute(
                    _Q[query[c.outcome]],
                    {"job_id": c.job_id, "lease_token": c.lease_token, "now": now,
                     "result": c.result_json, "error": c.error_json,
                     "retry_delay": c.retry_delay},
                ).fetchone()
                if row is not None:
                    applied.append(int(row[0]))
        return applied

    def job_heartbeat(
        self, worker_id: str, jobs: Sequence[HeldJob], lease_seconds: float
    ) -> list[int]:
        if not jobs:
            return []
        with self._write() as conn:
            rows = conn.execute(
                _Q["job_heartbeat"],
                {"worker_id": worker_id, "held": _held(jobs), "now": self.clock.now(),
                 "lease_seconds": lease_seconds},
            ).fetchall()
        return [int(r[0]) for r in rows]

    def job_release_many(
        self, worker_id: str, jobs: Sequence[HeldJob], delay: float = 0.0
    ) -> list[int]:
        if not jobs:
            return []
        with self._write() as conn:
            rows = conn.execute(
                _Q["job_release"],
                {"worker_id": worker_id, "held": _held(jobs), "now": self.clock.now(),
                 "delay": max(0.0, delay)},
            ).fetchall()
        self._notify_local()
        return [int(r[0]) for r in rows]

    def job_rescue(self, limit: int = 1000) -> list[int]:
        with self._write() as conn:
            now = self.clock.now()
            params = {"now": now, "limit": limit, "minute": _minute(now)}
            # Same selection as the rescue, in the same transaction: the lost attempts counted.
            conn.execute(_Q["stats_record_rescue"], params)
            rows = conn.execute(_Q["job_rescue"], params).fetchall()
        return [int(r[0]) for r in rows]

    # -- operator side ------------------------------------------------------------
    def job_get(self, job_id: int) -> JobRecord | None:
        rows = self._read(_Q["job_get"], {"job_id": job_id})
        return job_record_from_row(rows[0]) if rows else None

    def job_list(self, filter: JobFilter) -> list[JobRecord]:
        rows = self._read(_Q["job_list"], _filter_params(filter))
        return [job_record_from_row(row) for row in rows]

    def job_retry(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int:
        with self._write() as conn:
            params = _filter_params(filter)
            params["now"] = self.clock.now()
            count = len(conn.execute(_Q["job_retry_dead"], params).fetchall())
            self._audit(conn, audit, count)
        self._notify_local()
        return count

    def job_cancel(self, job_id: int, *, audit: AuditRecord | None = None) -> bool:
        with self._write() as conn:
            row = conn.execute(
                _Q["job_cancel"],
                {"job_id": job_id, "now": self.clock.now()},
            ).fetchone()
            self._audit(conn, audit, int(row is not None))
        return row is not None

    def job_delete(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int:
        params = _filter_params(filter)
        if params["states"] is None:
            params["states"] = dumps(sorted(FINISHED_STATES))
        with self._write() as conn:
            count = len(conn.execute(_Q["job_delete"], params).fetchall())
            self._audit(conn, audit, count)
        return count

    def job_prune(self, older_than: float, limit: int = 10_000) -> int:
        with self._write() as conn:
            rows = conn.execute(
                _Q["job_prune"], {"now": self.clock.now(), "older_than": older_than, "limit": limit}
            ).fetchall()
        return len(rows)

    def queue_stats(self) -> list[QueueStats]:
        now = self.clock.now()
        rows = self._read(_Q["queue_stats"], {"now": now})
        by_queue: dict[str, dict[JobState, int]] = {}
        oldest: dict[str, float] = {}
        for row in rows:
            counts = by_queue.setdefault(row["queue"], dict.fromkeys(JobState, 0))
            counts[JobState(row["state"])] = int(row["jobs"])
            if row["oldest_due_run_at"] is not None:
                seen = oldest.get(row["queue"])
                value = float(row["oldest_due_run_at"])
                oldest[row["queue"]] = value if seen is None else min(seen, value)
        return [
            QueueStats(
                queue=queue,
                counts=counts,
                oldest_available_age=(max(0.0, now - oldest[queue]) if queue in oldest else None),
            )
            for queue, counts in sorted(by_queue.items())
        ]

    def queue_pause(
        self, queue: str, by: str = "", *, audit: AuditRecord | None = None
    ) -> bool:
        with self._write() as conn:
            row = conn.execute(
                _Q["queue_pause"], {"queue": queue, "by": by, "now": self.clock.now()}
            ).fetchone()
            self._audit(conn, audit, int(row is not None))
        return row is not None

    def queue_resume(self, queue: str, *, audit: AuditRecord | None = None) -> bool:
        with self._write() as conn:
            row = conn.execute(_Q["queue_resume"], {"queue": queue}).fetchone()
            self._audit(conn, audit, int(row is not None))
        self._notify_local()
        return row is not None

    def queue_pause_list(self) -> list[QueuePause]:
        return [
            QueuePause(row["queue"], float(row["paused_at"]), row["paused_by"])
            for row in self._read(_Q["queue_pause_list"], {})
        ]

    def job_throughput(self, since: float, bucket_seconds: float) -> list[Throughput]:
        rows = self._read(_Q["job_throughput"], {"since": since, "bucket": bucket_seconds})
        return [
            Throughput(row["queue"], JobState(row["state"]), int(row["bucket"]), int(row["jobs"]))
            for row in rows
        ]

    # -- API tokens ---------------------------------------------------------------
    def token_insert(self, token: TokenInsert, *, audit: AuditRecord | None = None) -> int:
        with self._write() as conn:
            row = conn.execute(
                _Q["token_insert"],
                {"name": token.name, "token_hash": token.token_hash, "role": token.role,
                 "tasks": dumps(list(token.tasks)), "queues": dumps(list(token.queues)),
                 "now": self.clock.now()},
            ).fetchone()
            self._audit(conn, audit, 1, target=f"token:{int(row[0])}")
        return int(row[0])

    def token_list(self) -> list[ApiToken]:
        return [_token(row) for row in self._read(_Q["token_list"], {})]

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        rows = self._read(_Q["token_by_hash"], {"token_hash": token_hash})
        return _token(rows[0]) if rows else None

    def token_revoke(self, token_id: int, *, audit: AuditRecord | None = None) -> bool:
        with self._write() as conn:
            row = conn.execute(
                _Q["token_revoke"], {"id": token_id, "now": self.clock.now()}
            ).fetchone()
            self._audit(conn, audit, int(row is not None))
        return row is not None

    def token_touch(self, token_id: int) -> None:
        with self._write() as conn:
            conn.execute(_Q["token_touch"], {"id": token_id, "now": self.clock.now()})

    # -- audit log ------------------------------------------------------------------
    def _audit(
        self, conn: sqlite3.Connection, audit: AuditRecord | None, count: int,
        *, target: str | None = None,
    ) -> int:
        """Write `audit` (if any) in the transaction open on `conn`, and prune expired ones."""
        if audit is None:
            return 0
        now = self.clock.now()
        row = conn.execute(
            _Q["audit_insert"],
            {"now": now, "actor": audit.actor, "source": audit.source, "action": audit.action,
             "target": audit.target if target is None else target, "count": count,
             "params": dumps(audit.params)},
        ).fetchone()
        conn.execute(
            _Q["audit_prune"],
            {"now": now, "older_than": audit.retention, "limit": AUDIT_PRUNE_BATCH},
        )
        return int(row[0])

    def audit_insert(self, record: AuditRecord, count: int = 0) -> int:
        with self._write() as conn:
            return self._audit(conn, record, count)

    def audit_list(self, filter: AuditFilter) -> list[AuditEntry]:
        rows = self._read(
            _Q["audit_list"],
            {"since": filter.since, "until": filter.until, "actor": filter.actor or None,
             "action": filter.action, "before_id": filter.before_id, "limit": filter.limit},
        )
        return [audit_entry_from_row(row) for row in rows]

    # -- observability ------------------------------------------------------------
    def stats_read(self, query: StatsQuery) -> list[JobStats]:
        rows = self._read(
            _Q["stats_read" if query.task is None else "stats_read_task"],
            {"since": query.since, "until": query.until, "task": query.task,
             "queue": query.queue, "per_minute": query.per_minute},
        )
        return [job_stats_from_row(row) for row in rows]

    def stats_error_types(
        self, since: float, *, task: str | None = None, limit: int = 5
    ) -> list[tuple[str, int]]:
        rows = self._read(_Q["stats_error_types"], {"since": since, "task": task, "limit": limit})
        return [(str(row["type"]), int(row["attempts"])) for row in rows]

    def stats_prune(self, older_than: float) -> int:
        with self._write() as conn:
            cur = conn.execute(
                _Q["stats_prune"], {"now": self.clock.now(), "older_than": older_than}
            )
            return cur.rowcount

    def leader_elect(self, name: str, holder: str, ttl: float) -> bool:
        with self._write() as conn:
            row = conn.execute(
                _Q["leader_elect"],
                {"name": name, "holder": holder, "ttl": ttl, "now": self.clock.now()},
            ).fetchone()
        return row is not None

    def leader_resign(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute(_Q["leader_resign"], {"name": name, "holder": holder})

    def alert_list(self) -> list[AlertState]:
        rows = self._read(_Q["alert_list"], {})
        return [
            AlertState(key=row["key"], firing=bool(row["firing"]),
                       changed_at=float(row["changed_at"]), details=_loads_dict(row["details"]))
            for row in rows
        ]

    def alert_set(self, state: AlertState) -> None:
        with self._write() as conn:
            conn.execute(
                _Q["alert_set"],
                {"key": state.key, "firing": int(state.firing), "now": self.clock.now(),
                 "details": dumps(state.details)},
            )

    # -- workers ----------------------------------------------------------------
    def worker_heartbeat(self, info: WorkerInfo) -> None:
        with self._write() as conn:
            now = self.clock.now()
            conn.execute(
                _Q["worker_heartbeat"],
                {"id": info.id, "hostname": info.hostname, "pid": info.pid,
                 "queues": dumps(list(info.queues)), "concurrency": info.concurrency,
                 "started_at": info.started_at, "now": now, "running": info.running,
                 "meta": dumps(info.meta)},
            )
            # Rows of workers silent for a day are history, not workers.
            conn.execute(_Q["worker_prune"], {"now": now, "older_than": 86_400.0})

    def worker_list(self, alive_within: float) -> list[WorkerInfo]:
        rows = self._read(_Q["worker_list"], {"now": self.clock.now(),
                                              "alive_within": alive_within})
        return [
            WorkerInfo(
                id=row["id"], hostname=row["hostname"], pid=int(row["pid"]),
                queues=_loads_list(row["queues"]), concurrency=int(row["concurrency"]),
                started_at=float(row["started_at"]),
                last_heartbeat_at=float(row["last_heartbeat_at"]),
                running=int(row["running"]), meta=_loads_dict(row["meta"]),
            )
            for row in rows
        ]

    def worker_remove(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(_Q["worker_remove"], {"worker_id": worker_id})

    # -- waiting ------------------------------------------------------------------
    def _notify_local(self) -> None:
        with self._wake:
            self._wake_generation += 1
            self._wake.notify_all()

    def wait_for_work(self, timeout: float) -> None:
        """Return when another connection committed (PRAGMA data_version moved),
        when this process enqueued, or after `timeout` seconds."""
        conn = self._conn
        deadline = time.monotonic() + timeout
        start_version = conn.execute("PRAGMA data_version").fetchone()[0]
        with self._wake:
            generation = self._wake_generation
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with self._wake:
                if self._wake_generation != generation:
                    return
                self._wake.wait(min(left, 0.005))
                if self._wake_generation != generation:
                    return
            if conn.execute("PRAGMA data_version").fetchone()[0] != start_version:
                return

    def now(self) -> float:
        return self.clock.now()

    def close(self) -> None:
        """Close every connection not in use by another live thread (closing one under a
        running statement would crash SQLite); those close when their thread ends."""
        self._closed = True
        me = threading.current_thread()
        with self._lock:
            connections, self._connections = self._connections, []
        for owner, conn in connections:
            if owner is me or not owner.is_alive():
                # The last connection to close checkpoints the WAL: a write, so guarded.
                with self._guard.hold(self.busy_timeout), contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._guard.close()
        self._local = threading.local()


def _minute(now: float) -> float:
    """The start of the minute `now` falls in: the key of the per-minute aggregates."""
    return math.floor(now / 60.0) * 60.0


def _held(jobs: Sequence[HeldJob]) -> str:
    return dumps([[job.id, job.lease_token] for job in jobs])


def _filter_params(filter: JobFilter) -> dict[str, Any]:
    return {
        "states": dumps([str(s) for s in filter.states]) if filter.states else None,
        "queue": filter.queue,
        "task": filter.task,
        "ids": dumps(list(filter.ids)) if filter.ids else None,
        "before_id": filter.before_id,
        "limit": filter.limit,
        "created_after": filter.created_after,
        "created_before": filter.created_before,
        "error_text": filter.error_text or None,
    }


def _token(row: sqlite3.Row) -> ApiToken:
    role: Role = row["role"]
    return ApiToken(
        id=int(row["id"]), name=row["name"], token_hash=row["token_hash"], role=role,
        tasks=_loads_list(row["tasks"]), queues=_loads_list(row["queues"]),
        created_at=float(row["created_at"]),
        last_used_at=None if row["last_used_at"] is None else float(row["last_used_at"]),
        revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]),
    )


def _loads_list(text: str) -> list[str]:
    import json

    return [str(v) for v in json.loads(text)]


def _loads_dict(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _split_statements(script: str) -> list[str]:
    """Split a migration into statements with SQLite's own completeness check."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not current.strip().startswith("--"):
        statements.append(current.strip())
    return statements


def translate_error(exc: sqlite3.Error) -> BackendError:
    text = str(exc)
    if "no such table" in text:
        return SchemaError(f"the conveyor tables are missing ({text}): run `conveyor migrate`")
    if "disk is full" in text or "database or disk is full" in text:
        return BackendError(
            f"the disk holding the SQLite file is full ({text}); nothing was written: free space"
        )
    if "locked" in text or "busy" in text:
        return BackendError(
            f"the SQLite file stayed locked past the busy timeout ({text}): a long transaction "
            "holds it; keep transactions short or raise busy_timeout in the URL"
        )
    return BackendError(f"SQLite error: {text}")
