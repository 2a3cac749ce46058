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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from conveyor.backends.base import (
    AUDIT_PRUNE_BATCH,
    SCHEMA_VERSION,
    ApiToken,
    AuditRecord,
    Completion,
    FetchParams,
    HeldJob,
    InsertResult,
    JobFilter,
    JobInsert,
    KeyWait,
    LimitNumbers,
    LimitState,
    SendGate,
    StepSave,
    WorkerInfo,
    WorkflowInsert,
)
from conveyor.backends.flow import (
    PREFETCH_START_WITHIN,
    LimitWatch,
    key_wait_from_row,
    limit_spec_params,
    limit_state_from_row,
)
from conveyor.backends.records import (
    RowLike,
    check_insert,
    dumps,
    filter_params,
    interleave,
    job_record_from_row,
    resolved,
    token_from_row,
)
from conveyor.backends.sql import (
    Run,
    SQLBackend,
    T,
    load_migrations,
    load_queries,
    step_params,
)
from conveyor.clock import Clock, SystemClock
from conveyor.errors import BackendError, ConfigurationError, EnqueueError, SchemaError
from conveyor.jsonvalue import storable_json
from conveyor.limits import LimitSpec
from conveyor.types import JobRecord, JobState

log = logging.getLogger("conveyor.sqlite")

_Q = load_queries("conveyor.backends.sqlite")
_MIGRATIONS = load_migrations("conveyor.backends.sqlite")

# The WAL-reset bug (database corruption when two connections checkpoint and
# write at the same moment) is fixed in 3.51.3 and backported to 3.44.6 and 3.50.7.
_WAL_RESET_FIXED = ((3, 51, 3), (3, 50, 7), (3, 44, 6))
_warned_versions: set[str] = set()
_COMPLETION_QUERIES = {"succeeded": "job_succeed", "retry": "job_retry_later", "dead": "job_kill"}

# -- write lock and stalls ------------------------------------------------------------
# A write that held the lock longer than this (a stopped or very slow process, a huge
# transaction) stalled every other writer: see WriteGuard. Never above 1 s, and a
# quarter of the shortest lease this process has used, but at least 0.25 s (below that
# an ordinary commit on a loaded machine would count as a stall).
STALL_THRESHOLD = 1.0
STALL_THRESHOLD_FLOOR = 0.25
_BUSY_SLACK_MS = 10
"""A connection's busy timeout is set again only when it is off by more than this."""


def sqlite_has_wal_reset_bug(version: str) -> bool:
    parts = tuple(int(p) for p in version.split(".")[:3])
    major_minor = parts[:2]
    for fixed in _WAL_RESET_FIXED:
        if major_minor == fixed[:2]:
            return parts < fixed
    return parts < _WAL_RESET_FIXED[0]


def _warn_sqlite_version() -> None:
    """Said once per process, when a writer that conveyor's lock does not order (the
    caller's own connection, `connection=`) writes to the file on an affected SQLite."""
    version = sqlite3.sqlite_version
    if version in _warned_versions or not sqlite_has_wal_reset_bug(version):
        return
    _warned_versions.add(version)
    log.warning(
        "SQLite %s has the WAL-reset bug (rare corruption when two connections write or "
        "checkpoint one file at the same moment; fixed in 3.51.3, 3.50.7 and 3.44.6). "
        "conveyor orders its own writes with a lock file, but not those of your own "
        "connection (connection=): keep its transactions short, or use a Python built "
        "with a newer SQLite", version,
    )


class WriteGuard:
    """Orders conveyor's writes to one SQLite file across threads and processes.

    SQLite admits one writer at a time anyway, so this costs no throughput. It does two
    things SQLite's own lock cannot:

    - on a SQLite with the WAL-reset bug it removes the bug's precondition (two
      connections writing or checkpointing at the same moment: auto-checkpoints run
      inside COMMIT, which happens under this guard);
    - it makes a stall measurable by the one who caused it. The guard is held from
      before `BEGIN IMMEDIATE` until after `COMMIT` returns (checkpoint and fsync
      included), so a holder that was stopped (SIGSTOP, a paused VM, swapped out) or
      slow finds, when it resumes, how long nobody else could write, and credits that
      time to every running lease before letting anyone else in (see
      `SQLiteBackend._write`). SQLite's own lock is released inside COMMIT, where no
      caller can look.

    A thread lock orders the threads of this process; `flock` on a sidecar file
    orders the processes, and the kernel drops it if its holder dies. A holder that
    dies while stopped cannot credit its stall, so the holder also writes when it took
    the lock into the lock file (no fsync: the page cache is shared by the processes
    of the host) and blanks it when it lets go; who next takes the lock and finds it
    not blank knows that its predecessor died holding it, and since when.
    """

    _MARK = 64  # bytes of the "held since" mark at the start of the lock file

    def __init__(self, db_path: str) -> None:
        self._thread_lock = threading.Lock()
        self._lock_path = os.path.abspath(db_path) + "-conveyor.lock"
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(self, timeout: float) -> Iterator[tuple[float, float]]:
        """Hold the lock. Yields the `time.monotonic()` at which it was acquired, and
        for how long this caller waited on a holder that died holding the lock (0.0
        if the last holder let go normally)."""
        asked_at = time.monotonic()
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
                acquired_at = time.monotonic()
                orphaned = self._orphaned_for(
                    self._mark(None), asked_at, acquired_at)
                self._mark(f"{acquired_at:.6f} {os.getpid()}")
                try:
                    yield acquired_at, orphaned
                finally:
                    self._mark("")
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _mark(self, text: str | None) -> bytes:
        """Read (None) or write the "held since" mark. Best effort: a lock file that
        cannot be written (a full disk) costs only the credit of a killed holder."""
        assert self._fd is not None
        try:
            if text is None:
                return os.pread(self._fd, self._MARK, 0)
            os.pwrite(self._fd, text.ljust(self._MARK).encode(), 0)
        except OSError:
            pass
        return b""

    @staticmethod
    def _orphaned_for(mark: bytes, asked_at: float, now: float) -> float:
        """How long this caller waited on a holder that never let go (0.0 if the last
        holder let go). Only the caller's own wait counts: a lock left by a killed
        holder and then unused for an hour is no stall. `time.monotonic()` is one
        clock for every process of the host since boot; a mark from before a reboot
        reads as absurd and is ignored."""
        if not mark.strip():
            return 0.0
        try:
            since = float(mark.split()[0])
        except (ValueError, IndexError):
            return 0.0
        if not 0.0 <= now - since < 86_400.0:
            return 0.0
        return now - max(since, asked_at)

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


class SQLiteBackend(SQLBackend):
    enqueue_deadline_in_caller = True
    """An enqueue with a deadline runs in the caller's thread: the only wait is for the
    write lock, and it is bounded by the deadline (see `job_insert_many`)."""

    _STATS_READ_TASK = "stats_read_task"

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        self.url = url
        self.path, options = parse_sqlite_url(url)
        self.clock: Clock = clock or SystemClock()
        self._limits = LimitWatch()
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
        self._guard = WriteGuard(self.path)
        self._stall_threshold = STALL_THRESHOLD

    # -- connections ----------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigurationError(
                f"the folder of the SQLite file {self.path!r} does not exist: create {directory}"
            )
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        with self._guard.hold(self.busy_timeout) as (_, orphaned):
            conn.execute("PRAGMA journal_mode=WAL")
            if orphaned > self._stall_threshold:  # see _write
                self._credit_stall(conn, orphaned)
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            # A thread that ended left its connection behind (its thread-local is gone,
            # this list still holds it): close those, or a process that runs short-lived
            # threads (a step's timeout, a helper per task) gathers open files without end.
            ended: list[sqlite3.Connection] = []
            kept: list[tuple[threading.Thread, sqlite3.Connection]] = []
            for owner, c in self._connections:  # one look per thread: it may end meanwhile
                if owner.is_alive():
                    kept.append((owner, c))
                else:
                    ended.append(c)
            kept.append((threading.current_thread(), conn))
            self._connections = kept
        for old in ended:  # never the last connection to the file: this one is open
            with contextlib.suppress(sqlite3.Error):
                old.close()
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
        started = time.monotonic()
        wait = self.busy_timeout if timeout is None else timeout
        with self._guard.hold(wait) as (acquired_at, orphaned):
            if orphaned > self._stall_threshold:
                # We waited this long on a holder that died holding the lock (stopped,
                # then killed): credit the stall it could not, before any rescue.
                self._credit_stall(conn, orphaned)
            left = None if timeout is None else max(0.001, timeout - (acquired_at - started))
            # An enqueue's deadline: wait no longer than that for SQLite's lock.
            self._busy_timeout(conn, self.busy_timeout if left is None else left)
            asked = time.monotonic()
            began: float | None = None
            try:
                with self._transaction(conn, timeout=left):
                    began = time.monotonic()
                    yield conn
            finally:
                # Time spent waiting in BEGIN IMMEDIATE for a writer outside conveyor's
                # lock (an application connection) stalled nobody on our account.
                waited = (began if began is not None else time.monotonic()) - asked
                held = time.monotonic() - acquired_at - waited
                if held > self._stall_threshold:
                    self._credit_stall(conn, held)

    def _busy_timeout(self, conn: sqlite3.Connection, seconds: float) -> None:
        """Make `conn` wait up to `seconds` for another connection's lock, setting it
        only when the one in force differs by more than `_BUSY_SLACK_MS` (or is longer
        than `seconds` plus that slack): back-to-back enqueues under the same deadline
        then set it once, not twice per call (two statements of a call of about 100 us
        without the fsync). The wait in force is never longer than asked by more than
        the slack, which the deadline's own precision (`Conveyor._insert_within`) dwarfs."""
        want = int(seconds * 1000)
        current: tuple[sqlite3.Connection, int] | None = getattr(self._local, "busy", None)
        if current is None or current[0] is not conn or abs(current[1] - want) > _BUSY_SLACK_MS:
            conn.execute(f"PRAGMA busy_timeout = {want}")
            self._local.busy = (conn, want)

    # -- stalls (see WriteGuard) ------------------------------------------------------
    def _learn_lease(self, lease_seconds: float) -> None:
        """A stall must be noticed well within the shortest lease in use."""
        threshold = min(STALL_THRESHOLD, max(STALL_THRESHOLD_FLOOR, lease_seconds / 4))
        self._stall_threshold = min(self._stall_threshold, threshold)

    def _credit_stall(self, conn: sqlite3.Connection, held: float) -> None:
        """This process held the write lock for `held` seconds, so nobody could renew a
        lease meanwhile: lease time runs only while the database accepts writes. Every
        lease still running when the stall began is extended by that time, in one more
        transaction under the same hold, so no rescue can judge a lease before the
        credit is in."""
        try:
            with self._transaction(conn):
                shifted = conn.execute(
                    _Q["job_lease_credit"],
                    {"seconds": held, "stall_began": self.clock.now() - held},
                ).rowcount
        except (sqlite3.Error, BackendError) as exc:
            log.warning("could not extend the running leases after a %.1fs stall: %s",
                        held, exc)
            return
        # Said when it mattered: a long bulk enqueue with nothing running is not news.
        log.log(
            logging.WARNING if shifted else logging.DEBUG,
            "this process held the SQLite write lock for %.1fs (it was stopped or starved, "
            "or a transaction was very long), so no other writer could commit meanwhile: "
            "%d running lease(s) extended by that time", held, shifted,
        )

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
        conn = self._conn
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise translate_error(exc) from exc
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc
        # Text that is not UTF-8 (written by another program): read it with U+FFFD
        # rather than fail the page or command that shows it.
        conn.text_factory = _text_replacing
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate_error(exc) from exc
        finally:
            conn.text_factory = str

    # -- the shared SQL base's primitives ----------------------------------------------
    def _rows(self, name: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        return self._read(_Q[name], {"now": self.clock.now(), **params})

    def _change(
        self, name: str, params: dict[str, Any], *, audit: AuditRecord | None = None,
        audit_target: Callable[[Sequence[RowLike]], str] | None = None,
    ) -> list[sqlite3.Row]:
        with self._write() as conn:
            rows = conn.execute(_Q[name], {"now": self.clock.now(), **params}).fetchall()
            self._audit(conn, audit, len(rows),
                        target=audit_target(rows) if audit and audit_target else None)
        return rows

    def _count(
        self, name: str, params: dict[str, Any], *, audit: AuditRecord | None = None
    ) -> int:
        with self._write() as conn:
            cur = conn.execute(_Q[name], {"now": self.clock.now(), **params})
            rows = cur.fetchall()
            count = len(rows) if cur.description is not None else cur.rowcount
            self._audit(conn, audit, count)
        return count

    def _job_rows(self, name: str, params: dict[str, Any]) -> list[JobRecord]:
        return [job_record_from_row(row) for row in self._read(_Q[name], params)]

    def _atomically(self, work: Callable[[Run], T]) -> T:
        with self._write() as conn:
            now = self.clock.now()

            def run(name: str, params: dict[str, Any]) -> list[sqlite3.Row]:
                return conn.execute(_Q[name], {"now": now, **params}).fetchall()

            return work(run)

    @staticmethod
    def _array(values: list[Any]) -> str:
        return dumps(values)

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
        for job in jobs:
            check_insert(job)
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
        self, jobs: Sequence[JobInsert], *, stop_session: int | None = None,
        deadline: float | None = None,
    ) -> list[InsertResult | None]:
        ids = [job.client_id for job in jobs if job.client_id is not None]

        def by_key(job: JobInsert) -> sqlite3.Row | None:
            rows = self._read(_Q["job_by_idempotency_key"],
                              {"task": job.task, "idempotency_key": job.idempotency_key})
            return rows[0] if rows else None

        return resolved(
            jobs, self._read(_Q["job_by_client_ids"], {"client_ids": dumps(ids)}), by_key
        )

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
                "limit_name": job.limit_name,
                "limit_key": job.limit_key,
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
        _warn_sqlite_version()  # this writer is not ordered by conveyor's lock
        return connection

    # -- worker side ------------------------------------------------------------
    def job_fetch(self, params: FetchParams) -> list[JobRecord]:
        if params.limit <= 0:
            return []
        self._learn_lease(params.lease_seconds)
        with self._write() as conn:
            now = self.clock.now()
            conn.execute(_Q["job_stage"], {"now": now})
            limited: list[JobRecord] = []
            room = self._limits.limited_room(now, params.start, params.limit)
            if room > 0 and self._limits.due(now):
                limited = self._fetch_limited(conn, params, now)
                if limited:
                    if self._limits.skip_unlimited(now, len(limited), params.start,
                                                   params.limit):
                        return limited
                    params = replace(params, limit=params.limit - len(limited),
                                     start=max(0, params.start - len(limited)))
            held_back: set[int] = set()
            candidates: list[list[int]] = []
            for queue in params.queues:
                rows = conn.execute(
                    _Q["job_fetch_candidates"], {"queue": queue, "limit": params.limit}
                ).fetchall()
                candidates.append([row[0] for row in rows])
                held_back.update(row[0] for row in rows if row[1])
            picked = interleave(candidates, params.limit)
            self._limits.unlimited_found(now, len(picked), params.limit)
            if held_back:
                # A job a dead worker held without starting it goes only to a free slot
                # (its start recorded here), never into a prefetch again: a second crash
                # of a worker it merely waited in would cost it its attempt.
                picked = [job_id for i, job_id in enumerate(picked)
                          if i < params.start or job_id not in held_back]
            rows = [] if not picked else conn.execute(
                _Q["job_lease"],
                {"ids": dumps(picked), "worker_id": params.worker_id, "now": now,
                 "lease_seconds": params.lease_seconds,
                 "started": dumps(picked[:max(0, params.start)])},
            ).fetchall()
            order = {job_id: i for i, job_id in enumerate(picked)}
            records = [job_record_from_row(row) for row in rows]
            records.sort(key=lambda r: order[r.id])
            more = self._limits.prefetch_room(now, len(limited), room,
                                              params.limit - len(records))
            if more:
                records += self._fetch_limited(conn, replace(params, limit=more, start=0), now)
        return limited + records

    def _fetch_limited(
        self, conn: sqlite3.Connection, params: FetchParams, now: float
    ) -> list[JobRecord]:
        """Lease limited jobs within their limits (docs/flow-control.md).

        One writer at a time: nothing else leases between these reads and the lease.
        The order is PostgreSQL's (job_fetch_limited.sql): keys take turns round-robin
        from each limit's cursor, at most `weight` jobs of a key per round, each limit
        within its allowance; jobs of a limit that bounds concurrency go to free slots
        first, and only a limit with a rate alone fills the prefetch, or one that bounds
        only each key's concurrency, from keys that keep a slot free besides."""
        queues = dumps(list(params.queues))
        limit = self._limits.limited_room(now, params.start, params.limit)
        limits = conn.execute(_Q["job_fetch_limits"], {
            "queues": queues, "start": params.start, "limit": limit, "now": now,
            "start_within": PREFETCH_START_WITHIN,
        }).fetchall()
        declared = conn.execute(_Q["limit_count"]).fetchone()[0] if not limits else len(limits)

        def saw(got: int) -> None:
            # A key-slots limit holds jobs back only when this fetch could not fill.
            self._limits.saw(now, declared, [
                (row["token_wait"], bool(row["bounded"]) and (got < limit or not row["key_slots"]))
                for row in limits
            ], rates=[(row["name"], row["tokens"] is not None) for row in limits])

        open_limits = [row for row in limits if row["allowance"] > 0]
        if not open_limits:
            saw(0)
            return []
        # (prefetchable, round, walk position, limit, key, job id, spare): spare, a job
        # of a key-slots limit whose key keeps a slot free besides it
        candidates: list[tuple[bool, int, int, str, str, int, bool]] = []
        held_back: set[int] = set()
        key_tokens: dict[tuple[str, str], float | None] = {}
        for row in open_limits:
            name = row["name"]
            turns: list[tuple[int, str, int, int]] = []  # walk position, key, allowance, weight
            for n, (key, state) in enumerate(self._walk_keys(conn, row, limit, now)):
                if len(turns) >= limit:  # as many keys as the fetch can take are enough
                    break
                key_tokens[(name, key)] = state["tokens"]
                allowance = int(row["allowance"])
                if state["tokens"] is not None:
                    allowance = min(allowance, int(state["tokens"]))
                if state["running"] is not None:
                    allowance = min(allowance, int(row["key_concurrency"]) - state["running"])
                if allowance > 0:
                    turns.append((n, key, allowance, int(state["weight"])))
            rounds = -(-limit // max(1, len(turns)))  # no key needs more rounds than this
            for n, key, allowance, weight in turns:
                jobs = conn.execute(_Q["job_fetch_limited_candidates"], {
                    "limit_name": name, "limit_key": key, "queues": queues,
                    "limit": min(allowance, weight * rounds),
                }).fetchall()
                held_back.update(int(job[0]) for job in jobs if job[1])
                candidates.extend(
                    (bool(row["prefetch"]), -(-(nth + 1) // weight), n, name, key, int(job[0]),
                     bool(row["key_slots"]) and nth + 1 < allowance)
                    for nth, job in enumerate(jobs)
                )
        # Jobs that go only to free slots first (False sorts first), then round by round.
        candidates.sort(key=lambda c: (c[0], c[1], c[2], c[3]))
        allowance_of = {row["name"]: int(row["allowance"]) for row in open_limits}
        picked: list[tuple[str, str, int, int]] = []  # name, key, walk position, id
        taken: Counter[str] = Counter()
        slot_only = 0
        for prefetchable, _, n, name, key_name, job_id, spare in candidates:
            if len(picked) >= limit:
                break
            if taken[name] >= allowance_of[name]:
                continue
            if not prefetchable:
                if slot_only < params.start:
                    slot_only += 1
                elif not spare or job_id in held_back:
                    continue
            elif len(picked) >= params.start and job_id in held_back:
                continue
            taken[name] += 1
            picked.append((name, key_name, n, job_id))
        if not picked:
            saw(0)
            return []
        ids = [job_id for _, _, _, job_id in picked]
        rows = conn.execute(
            _Q["job_lease"],
            {"ids": dumps(ids), "worker_id": params.worker_id, "now": now,
             "lease_seconds": params.lease_seconds, "started": dumps(ids[:params.start])},
        ).fetchall()
        leased = {int(row["id"]) for row in rows}
        position = {job_id: i for i, job_id in enumerate(ids)}
        for name in {name for name, _, _, job_id in picked if job_id in leased}:
            mine = [(n, key, job_id) for nm, key, n, job_id in picked
                    if nm == name and job_id in leased]
            conn.execute(_Q["limit_spend"], {
                "name": name, "used": len(mine), "now": now,
                "prefetched": int(any(position[job_id] >= params.start for _, _, job_id in mine)),
                "start_within": PREFETCH_START_WITHIN, "cursor_key": max(mine)[1],
            })
        for (name, key_name), used in Counter(
            (nm, key) for nm, key, _, job_id in picked if job_id in leased
        ).items():
            left = key_tokens[(name, key_name)]
            if left is not None:
                conn.execute(_Q["limit_key_serve"], {
                    "limit_name": name, "key": key_name, "now": now, "tokens": left - used,
                })
        records = [job_record_from_row(row) for row in rows]
        records.sort(key=lambda r: position[r.id])
        saw(len(records))
        return records

    def _walk_keys(
        self, conn: sqlite3.Connection, limit_row: sqlite3.Row, fetch: int, now: float
    ) -> Iterator[tuple[str, sqlite3.Row]]:
        """The keys of a limit with available jobs, round-robin: from the one after its
        cursor, wrapping around to the cursor itself, at most `2 * fetch + 16` of them
        (PostgreSQL's walk), with each key's state; a paused key is passed over."""
        name, cursor = limit_row["name"], limit_row["cursor_key"]
        after, wrapped = cursor, cursor is None
        for _ in range(2 * fetch + 16):
            found = None if after is None else conn.execute(
                _Q["limit_next_key"], {"limit_name": name, "after": after}).fetchone()
            if found is None:
                if wrapped and after is not None:
                    return
                after, wrapped = None, True
                found = conn.execute(_Q["limit_first_key"], {"limit_name": name}).fetchone()
                if found is None:
                    return
            key = found[0]
            if wrapped and cursor is not None and key > cursor:
                return
            after = key
            state = conn.execute(_Q["limit_key_state"], {
                "limit_name": name, "limit_key": key, "now": now,
                "key_rate": limit_row["key_rate"], "key_burst": limit_row["key_burst"],
                "key_concurrency": limit_row["key_concurrency"],
            }).fetchone()
            if not state["paused"]:
                yield key, state

    def job_complete_many(
        self, completions: Sequence[Completion], *, started: Sequence[HeldJob] = ()
    ) -> list[int]:
        # An unknown outcome changes (and counts) nothing, as on PostgreSQL.
        known = [c for c in completions if c.outcome in _COMPLETION_QUERIES]
        if not known:
            self.job_start_many("", started)
            return []
        applied: list[int] = []
        with self._write() as conn:
            now = self.clock.now()
            if started:
                conn.execute(_Q["job_start"], {"held": _held(started)})
            # Counted first, over the rows the updates below will change, in this transaction.
            conn.execute(
                _Q["stats_record_completions"],
                {"minute": _minute(now), "now": now,
                 "done": dumps([[c.job_id, c.lease_token, c.outcome] for c in known])},
            )
            for c in known:
                row = conn.execute(
                    _Q[_COMPLETION_QUERIES[c.outcome]],
                    {"job_id": c.job_id, "lease_token": c.lease_token, "now": now,
                     "result": storable_json(c.result_json), "error": storable_json(c.error_json),
                     "retry_delay": c.retry_delay},
                ).fetchone()
                if row is not None:
                    applied.append(int(row[0]))
            woken: list[str] = []
            if any(c.in_workflow for c in known):
                ended = set(applied)
                woken = self._workflow_advance(self._runner(conn, now), [
                    (c.job_id, c.outcome) for c in known
                    if c.job_id in ended and c.outcome in ("succeeded", "dead")
                ])
        if woken or (applied and self._limits.waiting is not None):
            # Jobs wait for a limit: a slot this process freed may admit one now, so a
            # worker of this process waiting to ask again asks at once (its own commits
            # do not move data_version, which is what wakes it for other processes').
            self._notify_local()
        return applied

    def job_start_many(self, worker_id: str, jobs: Sequence[HeldJob]) -> None:
        if not jobs:
            return
        with self._write() as conn:
            conn.execute(_Q["job_start"], {"held": _held(jobs)})

    def job_heartbeat(
        self, worker_id: str, jobs: Sequence[HeldJob], lease_seconds: float
    ) -> list[int]:
        if not jobs:
            return []
        self._learn_lease(lease_seconds)
        return self._held_write("job_heartbeat", worker_id, jobs, lease_seconds=lease_seconds)

    def job_release_many(
        self, worker_id: str, jobs: Sequence[HeldJob], delay: float = 0.0
    ) -> list[int]:
        released = self._held_write("job_release", worker_id, jobs, delay=max(0.0, delay))
        if released:
            self._notify_local()
        return released

    def job_suspend_many(
        self, worker_id: str, waits: Sequence[tuple[HeldJob, float, StepSave]]
    ) -> list[int]:
        if not waits:
            return []
        given_back: list[int] = []
        with self._write() as conn:
            now = self.clock.now()
            for job, delay, step in sorted(waits, key=lambda w: w[0].id):
                if conn.execute(
                    _Q["step_save"], {**step_params(step), "now": now}
                ).fetchone() is None:
                    continue  # not ours any more: nothing written
                # The same transaction and lease as the step: both are written, or neither.
                row = conn.execute(_Q["job_release"], {
                    "worker_id": worker_id, "held": _held([job]), "now": now,
                    "delay": max(0.0, delay),
                }).fetchone()
                if row is not None:
                    given_back.append(int(row[0]))
        return given_back

    def _held_write(
        self, name: str, worker_id: str, jobs: Sequence[HeldJob], **params: float
    ) -> list[int]:
        """Change the jobs `worker_id` still holds (fenced by their lease tokens)."""
        if not jobs:
            return []
        held = _held(jobs)
        with self._write() as conn:
            rows = conn.execute(
                _Q[name],
                {"worker_id": worker_id, "held": held, "now": self.clock.now(), **params},
            ).fetchall()
        return [int(r[0]) for r in rows]

    def job_vacuum(self, min_dead: int) -> bool:
        """Nothing to do: SQLite rewrites a row in place (no dead versions pile up in front
        of the fetch index), and pruned pages go back to its free list."""
        return False

    def job_rescue(self, limit: int = 1000) -> list[int]:
        with self._write() as conn:
            now = self.clock.now()
            params = {"now": now, "limit": limit, "minute": _minute(now)}
            # Same selection as the rescue, in the same transaction: the lost attempts counted.
            conn.execute(_Q["stats_record_rescue"], params)
            rows = conn.execute(_Q["job_rescue"], params).fetchall()
            dead = [(int(r[0]), str(r[1])) for r in rows if r[1] == JobState.DEAD]
            woken = self._workflow_advance(self._runner(conn, now), dead) if dead else []
        if woken:
            self._notify_local()
        return [int(r[0]) for r in rows]

    # -- workflows ----------------------------------------------------------------
    @staticmethod
    def _runner(conn: sqlite3.Connection, now: float) -> Run:
        def run(name: str, params: dict[str, Any]) -> list[sqlite3.Row]:
            return conn.execute(_Q[name], {"now": now, **params}).fetchall()
        return run

    def workflow_insert(
        self, workflow: WorkflowInsert, *, connection: Any = None
    ) -> list[InsertResult]:
        for job in workflow.jobs:
            check_insert(job)
        if connection is not None:
            conn = self._check_foreign_connection(connection)
            try:
                results = self._insert(conn, workflow.jobs)
                self._workflow_write(self._runner(conn, self.clock.now()), workflow,
                                     [r.id for r in results])
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
            return results
        with self._write() as conn:
            results = self._insert(conn, workflow.jobs)
            self._workflow_write(self._runner(conn, self.clock.now()), workflow,
                                 [r.id for r in results])
        self._notify_local()
        return results

    def job_cancel(self, job_id: int, *, audit: AuditRecord | None = None) -> bool:
        with self._write() as conn:
            now = self.clock.now()
            rows = conn.execute(_Q["job_cancel"], {"job_id": job_id, "now": now}).fetchall()
            woken = self._workflow_advance(self._runner(conn, now), [
                (job_id, JobState.CANCELLED.value)]) if rows else []
            self._audit(conn, audit, len(rows))
        if woken:
            self._notify_local()
        return bool(rows)

    def workflow_cancel(
        self, workflow_id: str, *, audit: AuditRecord | None = None
    ) -> int | None:
        with self._write() as conn:
            now = self.clock.now()
            run = self._runner(conn, now)
            if not run("workflow_get", {"workflow_id": workflow_id}):
                return None
            run("workflow_mark_cancelled", {"workflow_id": workflow_id})
            rows = run("workflow_cancel", {"workflow_id": workflow_id})
            self._workflow_advance(run, [(int(r["id"]), JobState.CANCELLED.value) for r in rows])
            self._audit(conn, audit, len(rows))
        return len(rows)
    # -- flow-control limits ---------------------------------------------------------
    def limit_declare(self, specs: Sequence[LimitSpec]) -> None:
        if not specs:
            return
        with self._write() as conn:
            now = self.clock.now()
            for spec in specs:
                conn.execute(_Q["limit_declare"], {**limit_spec_params(spec), "now": now})
                for key, weight in spec.weights:
                    conn.execute(_Q["limit_key_weight"],
                                 {"name": spec.name, "key": key, "weight": weight})
        self._limits.declared()

    def limit_list(self, name: str | None = None) -> list[LimitState]:
        rows = self._read(_Q["limit_list"], {"name": name, "now": self.clock.now()})
        return [limit_state_from_row(row) for row in rows]

    def limit_set(
        self, name: str, numbers: LimitNumbers, *, audit: AuditRecord | None = None
    ) -> bool:
        with self._write() as conn:
            row = conn.execute(
                _Q["limit_set"], {**asdict(numbers), "name": name, "now": self.clock.now()}
            ).fetchone()
            self._audit(conn, audit, int(row is not None))
        self._notify_local()
        return row is not None

    def limit_reset(self, name: str, *, audit: AuditRecord | None = None) -> bool:
        with self._write() as conn:
            row = conn.execute(
                _Q["limit_reset"], {"name": name, "now": self.clock.now()}
            ).fetchone()
            self._audit(conn, audit, int(row is not None))
        return row is not None

    def limit_pause(self, name: str, key: str | None, seconds: float, reason: str) -> bool:
        params = {"name": name, "key": key, "seconds": seconds, "reason": reason,
                  "now": self.clock.now()}
        with self._write() as conn:
            if key is None:
                return conn.execute(_Q["limit_pause_all"], params).fetchone() is not None
            return conn.execute(_Q["limit_pause"], params).rowcount > 0

    def limit_key_wait(self, job: JobRecord) -> KeyWait | None:
        if job.limit_name is None:
            return None
        rows = self._read(_Q["limit_key_get"], {
            "name": job.limit_name, "key": job.limit_key or "", "now": self.clock.now(),
            "priority": job.priority, "run_at": job.run_at.timestamp(), "id": job.id,
        })
        return key_wait_from_row(rows[0])

    def limits_waiting(self) -> float | None:
        return self._limits.waiting

    def prefetch_start_within(self, limit_name: str) -> float | None:
        return self._limits.start_within(limit_name)

    # -- operator side ------------------------------------------------------------
    def job_retry(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int:
        with self._write() as conn:
            params = filter_params(filter, dumps)
            params["now"] = self.clock.now()
            params["actor"] = "" if audit is None else audit.actor
            conn.execute(_Q["job_retry_mark"], params)
            count = len(conn.execute(_Q["job_retry_dead"], params).fetchall())
            self._audit(conn, audit, count)
            if audit is not None:  # the retry marks live as long as the audit entries
                conn.execute(_Q["job_retries_prune"], {
                    "now": params["now"], "older_than": audit.retention,
                    "limit": AUDIT_PRUNE_BATCH})
        self._notify_local()
        return count

    def job_signal(self, job_id: int, name: str, payload_json: str) -> str | None:
        params = {"now": self.clock.now(), "job_id": job_id, "name": name,
                  "payload": payload_json}
        with self._write() as conn:
            rows = conn.execute(_Q["step_signal"], params).fetchall()
            if not rows:
                return None
            if rows[0]["status"] == "done":
                woken = conn.execute(_Q["job_wake"], params).fetchall()
            else:
                woken = []
        if woken:
            self._notify_local()
        return str(rows[0]["status"])

    def queue_resume(self, queue: str, *, audit: AuditRecord | None = None) -> bool:
        with self._write() as conn:
            row = conn.execute(_Q["queue_resume"], {"queue": queue}).fetchone()
            self._audit(conn, audit, int(row is not None))
        self._notify_local()
        return row is not None

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

    # -- dashboard sessions -------------------------------------------------------
    def session_insert(self, session_hash: str, token_id: int, lifetime: float) -> None:
        with self._write() as conn:
            now = self.clock.now()
            conn.execute(_Q["session_prune"], {"now": now})
            conn.execute(_Q["session_insert"], {"session_hash": session_hash,
                                                "token_id": token_id, "now": now,
                                                "lifetime": lifetime})

    def session_token(self, session_hash: str) -> ApiToken | None:
        rows = self._read(_Q["session_token"],
                          {"session_hash": session_hash, "now": self.clock.now()})
        return token_from_row(rows[0]) if rows else None

    def session_end(self, session_hash: str) -> None:
        with self._write() as conn:
            conn.execute(_Q["session_end"], {"session_hash": session_hash})

    # -- observability ------------------------------------------------------------
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


def _held(jobs: Sequence[HeldJob]) -> str:
    """Held jobs as the fenced queries take them: JSON `[[id, lease_token], ...]`."""
    return dumps([[job.id, job.lease_token] for job in jobs])


def _minute(now: float) -> float:
    """The start of the minute `now` falls in: the key of the per-minute aggregates."""
    return math.floor(now / 60.0) * 60.0


def _text_replacing(data: bytes) -> str:
    return data.decode("utf-8", "replace")


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
