"""The PostgreSQL backend: one database shared by any number of workers on any number of hosts.

Workers fetch with `FOR UPDATE SKIP LOCKED` (they never wait on each other),
wake on LISTEN/NOTIFY (polling stays the fallback), and batch their round
trips: one statement per batch of completions, heartbeats or releases, one
transaction per fetch.

The clock: every time decision (run_at, lease expiry, rescue, idempotency
windows, retention) is made by the database with `now()`, never by the
worker's clock, so hosts with skewed clocks agree on what is due and what
expired.

Connections come from a `psycopg_pool.ConnectionPool` in autocommit mode
(a single statement needs no BEGIN/COMMIT round trips; several statements run
in an explicit transaction). Connections are checked when taken from the pool,
so after a PostgreSQL restart the broken ones are dropped and replaced instead
of failing a worker's next call. SQL uses only named `%(name)s` placeholders and
does not depend on server-side prepared statements, so it also runs through
PgBouncer.

LISTEN needs a direct connection: through PgBouncer in transaction (or
statement) pooling mode a LISTEN lands on whichever server connection serves
that transaction, and notifications never reach us. Point the URL at
PostgreSQL itself (or a session-pooling PgBouncer) for push wake-ups; with
anything else workers still find work by polling every `poll_interval`.

Unlike SQLite, PostgreSQL is never migrated implicitly: a shared database is
changed by an operator running `conveyor migrate` (or applying the SQL that
`conveyor migrate --dry-run` prints), and every other call refuses to run on a
schema it does not know.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from typing import Any, Self

import psycopg
import psycopg.errors
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from conveyor.backends.base import (
    AUDIT_PRUNE_BATCH,
    SCHEMA_VERSION,
    WATCHDOG,
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
    check_insert_arguments,
    dumps,
    filter_params,
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
from conveyor.clock import EARLIEST, LATEST
from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    EnqueueError,
    SchemaError,
)
from conveyor.jsonvalue import loads_readable, storable_json
from conveyor.limits import LimitSpec
from conveyor.types import JobRecord, JobState

log = logging.getLogger("conveyor.postgres")

_Q = load_queries("conveyor.backends.postgres")
_MIGRATIONS = load_migrations("conveyor.backends.postgres")

_STAGE_LIMIT = 1_000
"""Most scheduled jobs one fetch makes available (so a fetch stays short); a larger
backlog that fell due at once is staged by the next fetches, oldest first."""
_STATES = {state.value: state for state in JobState}
"""A state by its stored name: a dict look-up, cheaper than JobState(name) per row."""
_NOTIFY_PAYLOAD_MAX = 7_999
"""PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; past that we send an empty one."""
_LISTEN_RETRY_AFTER = 5.0
"""Seconds to poll instead of retrying a LISTEN connection that just failed."""
FRESH_SECONDS = 0.01
"""An enqueue on a connection that answered one this recently sends its INSERT without
a ping first (see `PostgresBackend._enqueue_connection`): the window in which a broken
network leaves an INSERT's outcome to be looked up grows by at most this much."""
_WORKER_HISTORY = 86_400.0
"""Rows of workers silent this long are history, not workers."""

Connection = psycopg.Connection[DictRow]

_last_connect_error: dict[str, str] = {}
"""Why the latest connection attempt to a URL failed, in libpq's words (the pool
itself only reports that it timed out). Cleared by the next success."""


class _PoolConnection(psycopg.Connection[DictRow]):
    """A pool connection that remembers why connecting failed, for the error message,
    and when it last answered an enqueue (`answered_at`, `time.monotonic()`)."""

    answered_at = -math.inf

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            _last_connect_error[conninfo] = str(exc).strip().replace("\n", " ")
            raise
        _last_connect_error.pop(conninfo, None)
        return conn


def _configure(conn: Connection) -> None:
    # Idempotent enqueue relies on READ COMMITTED (ON CONFLICT waits for the
    # racing transaction, then the next statement sees its row): do not inherit
    # a stricter default_transaction_isolation from the server.
    conn.isolation_level = IsolationLevel.READ_COMMITTED
    # Arguments and results are `json` (kept as written, numbers exact); a row holding
    # a character that cannot be shown reads with U+FFFD instead of failing.
    set_json_loads(loads_readable, conn)


class _LenientTimestamptzLoader(TimestamptzLoader):
    """A timestamptz beyond what `datetime` holds (PostgreSQL allows year 294276)
    reads as the nearer end of the range instead of failing the read."""

    def load(self, data: Any) -> Any:
        try:
            return super().load(data)
        except psycopg.DataError:
            return EARLIEST if bytes(data).rstrip().endswith(b"BC") else LATEST


class PostgresBackend(SQLBackend):
    enqueue_deadline_in_caller = True
    """An enqueue with a deadline runs in the caller's thread: the pool's timeout bounds
    the wait for a connection, and the watchdog cuts a write still waiting at the
    deadline (see `_enqueue_connection`)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        min_connections: int = 1,
        max_connections: int = 10,
    ) -> None:
        self.url = url
        self.connect_timeout = float(connect_timeout)
        self._limits = LimitWatch()
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"bad PostgreSQL URL ({str(exc).strip()}): write "
                "postgresql://user@host:5432/database"
            ) from exc
        host = str(params.get("host") or "(local socket)")
        port = str(params.get("port") or "5432")
        self._dbname = str(params["dbname"]) if params.get("dbname") else None
        user = params.get("user")
        self.where = (
            f"postgresql://{f'{user}@' if user else ''}{host}:{port}/{self._dbname or ''}"
        )
        """The URL without its password: safe for logs and error messages."""
        self._connect_kwargs: dict[str, Any] = {
            # libpq wants whole seconds; never round a short timeout down to "wait forever".
            "connect_timeout": max(1, math.ceil(self.connect_timeout)),
        }
        if "application_name" not in params:
            self._connect_kwargs["application_name"] = "conveyor"
        self._min_connections = min_connections
        self._max_connections = max_connections
        self._pool: ConnectionPool[_PoolConnection] | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        self._closed = False
        # LISTEN: one dedicated autocommit connection, outside the pool.
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._listen_pid = 0
        self._listen_lock = threading.Lock()
        self._listen_retry_at = 0.0
        self._wake = threading.Condition()
        self._wake_generation = 0
        self._closing = threading.Event()

    def __repr__(self) -> str:
        return f"<PostgresBackend {self.where}>"

    # -- connections ----------------------------------------------------------------
    def _get_pool(self) -> ConnectionPool[_PoolConnection]:
        pool = self._pool
        if pool is not None and self._pool_pid == os.getpid():
            return pool
        with self._pool_lock:
            if self._closed:
                raise BackendError("this conveyor backend is closed")
            if self._pool is None or self._pool_pid != os.getpid():
                # A forked child never touches its parent's connections: it opens its own.
                self._pool = ConnectionPool(
                    self.url,
                    connection_class=_PoolConnection,
                    kwargs={**self._connect_kwargs, "autocommit": True, "row_factory": dict_row,
                            "prepare_threshold": None},
                    min_size=self._min_connections,
                    max_size=self._max_connections,
                    open=False,
                    configure=_configure,
                    timeout=self.connect_timeout,
                    # Give up a background reconnection cycle early (its backoff doubles
                    # up to this), so the pool is back within seconds of the server.
                    reconnect_timeout=max(15.0, 3 * self.connect_timeout),
                    name=f"conveyor {self.where}",
                )
                self._pool.open(wait=False)
                self._pool_pid = os.getpid()
            return self._pool

    @contextlib.contextmanager
    def _connection(self, *, quick_check: bool = False) -> Iterator[Connection]:
        """A pooled autocommit connection; every psycopg error leaves as a conveyor error.

        `quick_check`: check the connection without a round trip (see
        `_checked_out`); for the worker's own calls, which it retries.
        """
        pool = self._get_pool()
        try:
            conn = self._checked_out(pool, quick_check=quick_check)
        except PoolTimeout as exc:
            raise self._unavailable(pool, exc) from exc
        except PoolClosed as exc:
            raise BackendError("this conveyor backend is closed") from exc
        try:
            yield conn
        except psycopg.Error as exc:
            raise translate_error(exc, self.where) from exc
        finally:
            broken = conn.broken
            pool.putconn(conn)  # a broken connection is discarded here, not reused
            if broken:
                # Likely a server restart: the idle connections are broken too. Check
                # them all now, so the caller's retry gets a fresh one.
                pool.check()

    def _checked_out(
        self, pool: ConnectionPool[_PoolConnection], *, quick_check: bool
    ) -> _PoolConnection:
        """A pool connection that answered an empty query now.

        The ping costs a round trip, as much as a fetch. With `quick_check`, an
        idle connection whose socket has nothing to read is used without one: a
        server that ends a connection (restart, pg_terminate_backend) sends an
        error and closes it, which makes the socket readable, and only then is
        the connection pinged. A busy worker's fetches, completions and
        heartbeats so never pay for a ping; a connection cut silently (no FIN)
        fails its call like one cut mid-way, and the worker retries. Operator
        calls, which nobody retries for the caller, always ping (enqueues, which
        have client ids to resolve a lost answer, ping only an idle connection:
        see `_enqueue_connection`): when
        the server has just gone away and its goodbye is still on its way (a
        proxy relays it late), the ping fails and the caller gets "cannot
        connect" (certainly not stored); with the quick check the INSERT would
        be sent on the dead connection and fail as "lost the connection", an
        outcome the caller cannot tell from a stored job (tests/faults,
        enqueue while PostgreSQL is down, shows it).

        A server restart breaks every pooled connection at once. The first one
        found broken makes the pool check all the others, so the caller gets a
        fresh connection at once instead of failing (or backing off) once per
        dead connection.
        """
        deadline = time.monotonic() + self.connect_timeout
        while True:
            conn = pool.getconn(timeout=max(0.001, deadline - time.monotonic()))
            if quick_check and not conn.broken and not _readable(conn):
                return conn
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error:
                pool.putconn(conn)
                pool.check()
                continue
            return conn

    @contextlib.contextmanager
    def _enqueue_connection(self, gate: SendGate | None) -> Iterator[Connection]:
        """A connection for an enqueue in the caller's own thread, within `gate`'s deadline.

        No hand-off to another thread and, on a connection that answered an enqueue
        within the last `FRESH_SECONDS`, no ping: the caller's write is cut at the
        deadline by the `Watchdog` (it shuts the connection's socket), and an INSERT
        whose answer was lost is looked up by client id (see `Conveyor._insert_within`).
        A connection idle for longer is pinged first (within the deadline too): when
        the network broke while it sat idle, the ping, not the INSERT, finds out, and
        the caller hears "not stored" at once instead of an outcome to look up.

        Nothing here waits longer than the deadline: the pool is asked with that
        timeout, and a broken connection makes the pool check the others in the
        background (a check waits on the network; the caller does not).
        """
        if gate is None or gate.deadline is None:
            with self._connection() as plain:
                yield plain
            return
        pool = self._get_pool()
        WATCHDOG.watch(gate)
        conn: _PoolConnection | None = None
        try:
            conn = self._checked_out_within(pool, gate)
            yield conn
            conn.answered_at = time.monotonic()
        except PoolTimeout as exc:
            raise self._unavailable(pool, exc) from exc
        except PoolClosed as exc:
            raise BackendError("this conveyor backend is closed") from exc
        except psycopg.Error as exc:
            raise translate_error(exc, self.where) from exc
        finally:
            gate.finish()  # before the connection goes back: no abort can reach it now
            WATCHDOG.done(gate)
            if conn is not None:
                broken = conn.broken
                pool.putconn(conn)
                if broken:
                    threading.Thread(
                        target=_check_pool, args=(pool,), name="conveyor-pool-check",
                        daemon=True,
                    ).start()

    def _checked_out_within(
        self, pool: ConnectionPool[_PoolConnection], gate: SendGate
    ) -> _PoolConnection:
        assert gate.deadline is not None
        while True:
            left = min(self.connect_timeout, gate.deadline - time.monotonic())
            if left <= 0:
                raise PoolTimeout("no working connection within the enqueue deadline")
            conn = pool.getconn(timeout=left)
            gate.attach(functools.partial(_cut, conn))
            if not conn.broken and not _readable(conn) and (
                time.monotonic() - conn.answered_at < FRESH_SECONDS
            ):
                return conn
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error:
                gate.attach(_nothing)
                pool.putconn(conn)
                threading.Thread(
                    target=_check_pool, args=(pool,), name="conveyor-pool-check", daemon=True
                ).start()
                continue
            return conn

    @contextlib.contextmanager
    def _transaction(self, *, pipeline: bool = False) -> Iterator[Connection]:
        """Several statements that commit together (or not at all).

        With `pipeline`, statements are sent without waiting for each other's
        results: BEGIN travels with the first statement and COMMIT with the last,
        so a fetch or an enqueue costs two round trips instead of four.
        """
        with self._connection() as conn, contextlib.ExitStack() as stack:
            if pipeline:
                stack.enter_context(conn.pipeline())
            stack.enter_context(conn.transaction())
            yield conn

    def _execute(
        self, query: str, params: dict[str, Any], *, quick_check: bool = False
    ) -> list[DictRow]:
        """One statement, which commits by itself."""
        with self._connection(quick_check=quick_check) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def _read_jobs(self, query: str, params: dict[str, Any]) -> list[JobRecord]:
        """Job rows for an operator's read: a stored time out of range never breaks it."""
        with self._connection() as conn, conn.cursor() as cur:
            cur.adapters.register_loader("timestamptz", _LenientTimestamptzLoader)
            return [job_record_from_row(row) for row in cur.execute(query, params).fetchall()]

    def _rowcount(self, query: str, params: dict[str, Any]) -> int:
        with self._connection() as conn:
            return conn.execute(query, params).rowcount

    # -- the shared SQL base's primitives ----------------------------------------------
    def _rows(self, name: str, params: dict[str, Any]) -> list[DictRow]:
        return self._execute(_Q[name], params)

    def _change(
        self, name: str, params: dict[str, Any], *, audit: AuditRecord | None = None,
        audit_target: Callable[[Sequence[RowLike]], str] | None = None,
    ) -> list[DictRow]:
        if audit is None:
            return self._execute(_Q[name], params)
        with self._transaction() as conn:
            rows = conn.execute(_Q[name], params).fetchall()
            _audit(conn, audit, len(rows), target=audit_target(rows) if audit_target else None)
        return rows

    def _count(
        self, name: str, params: dict[str, Any], *, audit: AuditRecord | None = None
    ) -> int:
        if audit is None:
            return self._rowcount(_Q[name], params)
        with self._transaction() as conn:
            count = conn.execute(_Q[name], params).rowcount
            _audit(conn, audit, count)
        return count

    def _job_rows(self, name: str, params: dict[str, Any]) -> list[JobRecord]:
        return self._read_jobs(_Q[name], params)

    def _atomically(self, work: Callable[[Run], T]) -> T:
        with self._transaction() as conn:

            def run(name: str, params: dict[str, Any]) -> list[DictRow]:
                cur = conn.execute(_Q[name], params)
                return cur.fetchall() if cur.description is not None else []

            return work(run)

    @staticmethod
    def _array(values: list[Any]) -> list[Any]:
        return values

    def _unavailable(self, pool: ConnectionPool[_PoolConnection], exc: PoolTimeout) -> BackendError:
        stats = pool.get_stats()
        if stats.get("pool_size", 0) >= self._max_connections:
            return BackendUnavailable(
                f"all {self._max_connections} connections to {self.where} stayed busy for "
                f"{self.connect_timeout:g}s ({exc}): look for long transactions in "
                "pg_stat_activity, or raise the connection limit"
            )
        return BackendUnavailable(
            f"cannot connect to PostgreSQL at {self.where} within {self.connect_timeout:g}s "
            f"({_last_connect_error.get(self.url) or exc}): check that the server is running "
            "and reachable from this host, and that the URL's host, port, user, password and "
            "database are right"
        )

    # -- schema ---------------------------------------------------------------------
    def migrate(self, *, dry_run: bool = False) -> list[tuple[int, str]]:
        with self._transaction() as conn:
            if dry_run:
                conn.execute(_Q["transaction_read_only"])
            else:
                # Several hosts may migrate at once: the second waits here, then
                # finds the schema current and applies nothing.
                conn.execute(_Q["migrate_lock"])
            applied = self._applied_versions(conn)
            current = max(applied, default=0)
            if current > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.where} is at schema {current}, newer than this conveyor knows "
                    f"({SCHEMA_VERSION}): upgrade conveyor"
                )
            # Every migration not yet recorded, not only those above the highest: numbers
            # are reserved per feature, so a lower one can arrive after a higher one.
            pending = [m for m in _MIGRATIONS if m.version not in applied]
            if not dry_run:
                for migration in pending:
                    conn.execute(migration.sql)
                    if migration.version not in self._applied_versions(conn):
                        raise SchemaError(
                            f"migration {migration.name} did not record itself in "
                            f"conveyor_schema: end it with "
                            f"INSERT INTO conveyor_schema (version, name) VALUES "
                            f"({migration.version}, '{migration.name}')"
                        )
                    log.info("applied migration %s to %s", migration.name, self.where)
        return [(m.version, m.sql) for m in pending]

    @staticmethod
    def _applied_versions(conn: Connection) -> set[int]:
        present = conn.execute(_Q["schema_table_exists"]).fetchone()
        if present is None or not present["present"]:
            return set()
        return {int(row["version"]) for row in conn.execute(_Q["schema_versions"]).fetchall()}

    @staticmethod
    def _schema_version(conn: Connection) -> int | None:
        present = conn.execute(_Q["schema_table_exists"]).fetchone()
        if present is None or not present["present"]:
            return None
        row = conn.execute(_Q["schema_version"]).fetchone()
        return None if row is None or row["version"] is None else int(row["version"])

    def schema_check(self) -> None:
        with self._connection() as conn:
            version = self._schema_version(conn)
            missing = {m.version for m in _MIGRATIONS} - self._applied_versions(conn)
        if version is None:
            raise SchemaError(
                f"the conveyor tables are missing in {self.where}: run `conveyor migrate` "
                "(PostgreSQL is never migrated implicitly)"
            )
        if version < SCHEMA_VERSION:
            raise SchemaError(
                f"{self.where} is at schema {version}, this conveyor needs {SCHEMA_VERSION}: "
                "run `conveyor migrate`"
            )
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.where} is at schema {version}, newer than this conveyor knows "
                f"({SCHEMA_VERSION}): upgrade conveyor on this host (`conveyor migrate` "
                "never downgrades)"
            )
        if missing:
            raise SchemaError(
                f"{self.where} lacks migration(s) {sorted(missing)} (added after a later one "
                "was applied): run `conveyor migrate`"
            )

    # -- enqueue --------------------------------------------------------------------
    def job_insert_many(
        self, jobs: Sequence[JobInsert], *, connection: Any = None, gate: SendGate | None = None
    ) -> list[InsertResult]:
        foreign = None if connection is None else self._check_foreign_connection(connection)
        if not jobs:
            return []
        due_group = _one_group_due_now(jobs)
        if due_group:  # every option alike: check them once, and each job's arguments
            check_insert(jobs[0])
            for job in jobs:
                check_insert_arguments(job)
        else:
            for job in jobs:
                check_insert(job)
        if foreign is not None:
            conn = foreign
            try:
                with _callers_transaction(conn):
                    return self._insert(conn, jobs)
            except psycopg.Error as exc:
                raise translate_error(exc, self.where) from exc
        if due_group:
            return self._insert_due_group(jobs, gate)
        with self._enqueue_connection(gate) as conn, conn.pipeline(), conn.transaction():
            if gate is not None:
                gate.sending(conn.info.backend_pid)
            return self._insert(conn, jobs)

    def job_find_client_id(self, client_id: str) -> int | None:
        rows = self._execute(_Q["job_by_client_ids"], {"client_ids": [client_id]})
        return int(rows[0]["id"]) if rows else None

    def job_resolve(
        self, jobs: Sequence[JobInsert], *, stop_session: int | None = None,
        deadline: float | None = None,
    ) -> list[InsertResult | None]:
        gate = None if deadline is None else SendGate(deadline)
        with self._enqueue_connection(gate) as conn:
            if stop_session is not None:
                try:
                    conn.execute(_Q["session_stop"], {"pid": stop_session})
                except psycopg.errors.InsufficientPrivilege as exc:
                    # Another role's session (never ours in practice): look up anyway.
                    log.warning("cannot end session %s before the look-up: %s",
                                stop_session, exc)
            ids = [job.client_id for job in jobs if job.client_id is not None]
            return resolved(
                jobs, conn.execute(_Q["job_by_client_ids"], {"client_ids": ids}).fetchall(),
                lambda job: conn.execute(
                    _Q["job_by_idempotency_key"],
                    {"task": job.task, "idempotency_key": job.idempotency_key},
                ).fetchone(),
            )

    def _insert_due_group(
        self, jobs: Sequence[JobInsert], gate: SendGate | None = None
    ) -> list[InsertResult]:
        """The common enqueue (one job, or a bulk of like ones, due now) in one round trip.

        The INSERT is one statement, atomic by itself, so it needs no explicit
        transaction (whose COMMIT would cost a second round trip); the NOTIFY
        travels in the same pipeline, after it, and wakes workers only once the
        jobs are committed.
        """
        params = _group_params(jobs[0])
        if len(jobs) == 1:
            # One statement (the INSERT and its NOTIFY), no pipeline: see job_insert_one.sql.
            params["args"] = jobs[0].args_json
            params["client_id"] = jobs[0].client_id
            params["queues"] = _notify_payload([jobs[0].queue])
            with self._enqueue_connection(gate) as conn:
                if gate is not None:
                    gate.sending(conn.info.backend_pid)
                row = conn.execute(_Q["job_insert_one"], params).fetchone()
            assert row is not None  # INSERT ... VALUES inserts its row (or raises)
            return [InsertResult(int(row["id"]), True, JobState(row["state"]))]
        params["args"] = "[" + ",".join([job.args_json for job in jobs]) + "]"
        params["client_ids"] = dumps([job.client_id for job in jobs])
        with self._enqueue_connection(gate) as conn, conn.pipeline(), \
                conn.cursor(row_factory=tuple_row) as cur:
            if gate is not None:
                gate.sending(conn.info.backend_pid)
            cur.execute(_Q["job_insert_group"], params)
            conn.execute(_Q["notify"], {"queues": _notify_payload([jobs[0].queue])})
            rows = sorted(cur.fetchall())  # (id, state): by id, which is input order
        if len(rows) != len(jobs):  # pragma: no cover - INSERT ... SELECT inserts all
            raise BackendError(f"inserted {len(rows)} of {len(jobs)} jobs")
        states = _STATES
        return [InsertResult(job_id, True, states[state]) for job_id, state in rows]

    def _insert(
        self, conn: psycopg.Connection[Any], jobs: Sequence[JobInsert]
    ) -> list[InsertResult]:
        """Insert in the transaction open on `conn`, then NOTIFY once, in it, for the due ones."""
        with conn.cursor(row_factory=dict_row) as cur:
            return self._insert_with(cur, jobs)

    def _insert_with(
        self, cur: psycopg.Cursor[DictRow], jobs: Sequence[JobInsert]
    ) -> list[InsertResult]:
        results: list[InsertResult | None] = [None] * len(jobs)
        # Jobs without idempotency keys, grouped by every option but their arguments
        # (a bulk enqueue is usually one group): one INSERT per group, whose
        # arguments travel as one JSON array, parsed once by the server.
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, job in enumerate(jobs):
            if job.idempotency_key is None:
                groups.setdefault(_group_key(job), []).append(i)
        for members in groups.values():
            first = jobs[members[0]]
            params = _group_params(first)
            params["args"] = "[" + ",".join(jobs[i].args_json for i in members) + "]"
            params["client_ids"] = dumps([jobs[i].client_id for i in members])
            cur.execute(_Q["job_insert_group"], params)
            # Rows were inserted in input order, so ascending ids restore it.
            rows = sorted(cur.fetchall(), key=lambda row: int(row["id"]))
            if len(rows) != len(members):  # pragma: no cover - INSERT ... SELECT inserts all
                raise BackendError(f"inserted {len(rows)} of {len(members)} jobs")
            for i, row in zip(members, rows, strict=True):
                results[i] = InsertResult(int(row["id"]), True, JobState(row["state"]))
        for i, job in enumerate(jobs):
            if job.idempotency_key is not None:
                results[i] = _insert_idempotent(cur, job)
        done = [r for r in results if r is not None]
        assert len(done) == len(jobs)
        woken = sorted({
            job.queue for job, r in zip(jobs, done, strict=True)
            if r.created and r.state == JobState.AVAILABLE
        })
        if woken:
            cur.execute(_Q["notify"], {"queues": _notify_payload(woken)})
        return done

    def _check_foreign_connection(self, connection: Any) -> psycopg.Connection[Any]:
        if not isinstance(connection, psycopg.Connection):
            raise EnqueueError(
                "connection= must be a psycopg (3) Connection for the PostgreSQL backend, got "
                f"{type(connection).__module__}.{type(connection).__name__}; pass the "
                "psycopg.Connection your transaction runs on (for SQLAlchemy: "
                "session.connection().connection.driver_connection)"
            )
        if connection.closed:
            raise EnqueueError("connection= is closed: pass an open connection")
        if connection.info.transaction_status == TransactionStatus.INERROR:
            raise EnqueueError(
                "connection= is in a failed transaction: roll it back before enqueueing"
            )
        theirs = connection.info.dbname
        if self._dbname is not None and theirs != self._dbname:
            raise EnqueueError(
                f"connection= is open on database {theirs!r} but this app stores jobs in "
                f"{self._dbname!r} ({self.where}): connect to the app's database"
            )
        return connection

    # -- worker side ----------------------------------------------------------------
    def job_fetch(self, params: FetchParams) -> list[JobRecord]:
        queues = list(dict.fromkeys(params.queues))
        if params.limit <= 0 or not queues:
            return []
        limited: list[JobRecord] = []
        now = time.monotonic()
        room = self._limits.limited_room(now, params.start, params.limit)
        if room > 0 and self._limits.due(now):
            limited = self._fetch_limited(queues, params, now, room)
            if limited:
                if self._limits.skip_unlimited(now, len(limited), params.start, params.limit):
                    return limited
                params = replace(params, limit=params.limit - len(limited),
                                 start=max(0, params.start - len(limited)))
        # Staging and leasing need not be atomic together (a staged job is simply
        # available), so each commits on its own: in one pipeline that is one round
        # trip, not the two an explicit transaction takes (BEGIN..., then COMMIT).
        with self._connection(quick_check=True) as conn, conn.pipeline():
            conn.execute(_Q["job_stage"], {"limit": _STAGE_LIMIT})
            rows = conn.execute(
                _Q["job_fetch"],
                {"queues": queues, "limit": params.limit, "worker_id": params.worker_id,
                 "lease_seconds": params.lease_seconds, "start": max(0, params.start)},
            ).fetchall()
        self._limits.unlimited_found(now, len(rows), params.limit)
        rows.sort(key=lambda row: int(row["pick_order"]))
        jobs = limited + [job_record_from_row(row) for row in rows]
        more = self._limits.prefetch_room(now, len(limited), room, params.limit - len(rows))
        if more:  # the next fetches do it in their first statement
            jobs += self._fetch_limited(queues, replace(params, limit=more, start=0), now, more)
        return jobs

    def _fetch_limited(
        self, queues: list[str], params: FetchParams, now: float, room: int
    ) -> list[JobRecord]:
        """Lease limited jobs within their limits (job_fetch_limited.sql): one statement,
        which locks the limits it leases from only while it runs, and in the same round
        trip what the worker's next wait needs (limit_waiting.sql)."""
        with self._connection(quick_check=True) as conn, conn.pipeline():
            fetched = conn.execute(_Q["job_fetch_limited"], {
                "queues": queues, "start": params.start,
                "limit": room,
                "worker_id": params.worker_id, "lease_seconds": params.lease_seconds,
                "start_within": PREFETCH_START_WITHIN,
            })
            waiting = conn.execute(_Q["limit_waiting"], {"queues": queues})
            rows = fetched.fetchall()
            declared = waiting.fetchall()
        skipped = rows[0]["skipped"] if rows else []
        rows = [row for row in rows if row["id"] is not None]
        # A key-slots limit holds jobs back only when this fetch could not fill.
        short = len(rows) < room
        self._limits.saw(now, len(declared), [
            (None if row["token_wait"] is None else float(row["token_wait"]),
             row["bounded"] and (short or not row["key_slots"]))
            for row in declared if row["has_work"]
        ], held_elsewhere=bool(skipped),
            rates=[(row["name"], row["token_wait"] is not None) for row in declared])
        rows.sort(key=lambda row: int(row["pick_order"]))
        return [job_record_from_row(row) for row in rows]

    # -- flow-control limits ---------------------------------------------------------
    def limit_declare(self, specs: Sequence[LimitSpec]) -> None:
        if not specs:
            return
        with self._transaction() as conn:
            for spec in sorted(specs, key=lambda s: s.name):  # lock order: by name
                conn.execute(_Q["limit_declare"], limit_spec_params(spec))
                for key, weight in spec.weights:
                    conn.execute(_Q["limit_key_weight"],
                                 {"name": spec.name, "key": key, "weight": weight})
        self._limits.declared()

    def limit_list(self, name: str | None = None) -> list[LimitState]:
        return [limit_state_from_row(row)
                for row in self._execute(_Q["limit_list"], {"name": name})]

    def limit_set(
        self, name: str, numbers: LimitNumbers, *, audit: AuditRecord | None = None
    ) -> bool:
        with self._transaction() as conn:
            row = conn.execute(_Q["limit_set"], {**asdict(numbers), "name": name}).fetchone()
            _audit(conn, audit, int(row is not None))
        return row is not None

    def limit_reset(self, name: str, *, audit: AuditRecord | None = None) -> bool:
        with self._transaction() as conn:
            row = conn.execute(_Q["limit_reset"], {"name": name}).fetchone()
            _audit(conn, audit, int(row is not None))
        return row is not None

    def limit_pause(self, name: str, key: str | None, seconds: float, reason: str) -> bool:
        params = {"name": name, "key": key, "seconds": seconds, "reason": reason}
        with self._connection() as conn:
            if key is None:
                return conn.execute(_Q["limit_pause_all"], params).fetchone() is not None
            return conn.execute(_Q["limit_pause"], params).rowcount > 0

    def limit_key_wait(self, job: JobRecord) -> KeyWait | None:
        if job.limit_name is None:
            return None
        rows = self._execute(_Q["limit_key_get"], {
            "name": job.limit_name, "key": job.limit_key or "", "priority": job.priority,
            "run_at": job.run_at, "id": job.id,
        })
        return key_wait_from_row(rows[0])

    def limits_waiting(self) -> float | None:
        return self._limits.waiting

    def prefetch_start_within(self, limit_name: str) -> float | None:
        return self._limits.start_within(limit_name)

    def job_complete_many(
        self, completions: Sequence[Completion], *, started: Sequence[HeldJob] = ()
    ) -> list[int]:
        if not completions and not started:
            return []
        given = [
            {"job_id": c.job_id, "lease_token": c.lease_token, "outcome": c.outcome,
             "result": storable_json(c.result_json), "error": storable_json(c.error_json),
             "retry_delay": c.retry_delay}
            for c in completions
        ]
        # Start marks ride in the same statement (one round trip, rows locked in id order).
        given += [{"job_id": j.id, "lease_token": j.lease_token, "outcome": "started"}
                  for j in started]
        if not any(c.in_workflow for c in completions):
            rows = self._execute(
                _Q["job_complete"], {"completions": dumps(given)}, quick_check=True
            )
            return [int(row["id"]) for row in rows]
        # Workflow nodes: the nodes they release or cancel change in the same transaction.
        outcomes = {c.job_id: c.outcome for c in completions}
        with self._connection(quick_check=True) as conn, conn.transaction():
            rows = conn.execute(_Q["job_complete"], {"completions": dumps(given)}).fetchall()
            ended = [(int(row["id"]), outcomes[int(row["id"])]) for row in rows
                     if outcomes.get(int(row["id"])) in ("succeeded", "dead")]
            _notify_queues(conn, self._workflow_advance(_runner(conn), ended))
        return [int(row["id"]) for row in rows]

    def job_vacuum(self, min_dead: int) -> bool:
        """VACUUM the job table once it holds at least `min_dead` dead row versions (and
        ANALYZE it too once as many rows changed since its statistics were taken).

        Every transition is an UPDATE, so each job leaves two dead versions behind, and
        their entries stay in the fetch index until a vacuum removes them: without one,
        every fetch walks past the entries of all the jobs fetched before it (a million
        -job drain slows to a quarter of its rate). Autovacuum may be off, or busy with
        other tables, or throttled; the maintenance leader calls this so the hot path
        stays short either way. Runs on an autocommit connection (VACUUM cannot run in
        a transaction); SKIP_LOCKED makes it a no-op while another vacuum runs."""
        with self._connection() as conn:
            row = conn.execute(_Q["job_table_churn"]).fetchone()
            if row is None or int(row["dead"]) < min_dead:
                return False
            analyze = int(row["modified"]) >= max(min_dead, int(row["live"]) // 10)
            conn.execute(_Q["job_table_vacuum_analyze" if analyze else "job_table_vacuum"])
        return True

    def job_start_many(self, worker_id: str, jobs: Sequence[HeldJob]) -> None:
        self.job_complete_many((), started=jobs)

    def job_heartbeat(
        self, worker_id: str, jobs: Sequence[HeldJob], lease_seconds: float
    ) -> list[int]:
        if not jobs:
            return []
        rows = self._execute(
            _Q["job_heartbeat"],
            {"worker_id": worker_id, "ids": [j.id for j in jobs],
             "tokens": [j.lease_token for j in jobs], "lease_seconds": lease_seconds},
            quick_check=True,
        )
        return [int(row["id"]) for row in rows]

    def job_release_many(
        self, worker_id: str, jobs: Sequence[HeldJob], delay: float = 0.0
    ) -> list[int]:
        if not jobs:
            return []
        with self._transaction() as conn:
            rows = conn.execute(
                _Q["job_release"],
                {"worker_id": worker_id, "ids": [j.id for j in jobs],
                 "tokens": [j.lease_token for j in jobs], "delay": max(0.0, delay)},
            ).fetchall()
            if delay <= 0:
                _notify_for(conn, rows)
        return [int(row["id"]) for row in rows]

    def job_suspend_many(
        self, worker_id: str, waits: Sequence[tuple[HeldJob, float, StepSave]]
    ) -> list[int]:
        if not waits:
            return []
        # Pipelined (one round trip, so the rows stay locked briefly), in id order like the
        # heartbeat's locks. A step and its release are fenced by the same lease in the
        # same transaction: both are written, or neither.
        with self._transaction(pipeline=True) as conn:
            released = []
            for job, delay, step in sorted(waits, key=lambda w: w[0].id):
                conn.execute(_Q["step_save"], step_params(step))
                released.append(conn.execute(_Q["job_release"], {
                    "worker_id": worker_id, "ids": [job.id], "tokens": [job.lease_token],
                    "delay": max(0.0, delay),
                }))
            rows = [cur.fetchone() for cur in released]
        return [int(row["id"]) for row in rows if row is not None]

    def job_rescue(self, limit: int = 1000) -> list[int]:
        with self._transaction() as conn:
            rows = conn.execute(_Q["job_rescue"], {"limit": limit}).fetchall()
            dead = [(int(row["id"]), str(row["state"])) for row in rows
                    if row["state"] == JobState.DEAD]
            if dead:
                _notify_queues(conn, self._workflow_advance(_runner(conn), dead))
        return [int(row["id"]) for row in rows]

    # -- workflows ------------------------------------------------------------------
    def workflow_insert(
        self, workflow: WorkflowInsert, *, connection: Any = None
    ) -> list[InsertResult]:
        foreign = None if connection is None else self._check_foreign_connection(connection)
        for job in workflow.jobs:
            check_insert(job)
        if foreign is not None:
            try:
                with _callers_transaction(foreign), foreign.cursor(row_factory=dict_row) as cur:
                    results = self._insert_with(cur, workflow.jobs)
                    self._workflow_write(_runner(cur), workflow, [r.id for r in results])
            except psycopg.Error as exc:
                raise translate_error(exc, self.where) from exc
            return results
        with self._transaction() as conn:
            results = self._insert(conn, workflow.jobs)
            self._workflow_write(_runner(conn), workflow, [r.id for r in results])
        return results

    def job_cancel(self, job_id: int, *, audit: AuditRecord | None = None) -> bool:
        with self._transaction() as conn:
            rows = conn.execute(_Q["job_cancel"], {"job_id": job_id}).fetchall()
            if rows:
                _notify_queues(conn, self._workflow_advance(
                    _runner(conn), [(job_id, JobState.CANCELLED.value)]))
            _audit(conn, audit, len(rows))
        return bool(rows)

    def workflow_cancel(
        self, workflow_id: str, *, audit: AuditRecord | None = None
    ) -> int | None:
        with self._transaction() as conn:
            run = _runner(conn)
            if not run("workflow_get", {"workflow_id": workflow_id}):
                return None
            run("workflow_mark_cancelled", {"workflow_id": workflow_id})
            rows = run("workflow_cancel", {"workflow_id": workflow_id})
            self._workflow_advance(
                run, [(int(row["id"]), JobState.CANCELLED.value) for row in rows])
            _audit(conn, audit, len(rows))
        return len(rows)

    # -- operator side --------------------------------------------------------------
    def job_retry(self, filter: JobFilter, *, audit: AuditRecord | None = None) -> int:
        params = filter_params(filter)
        params["actor"] = "" if audit is None else audit.actor
        with self._transaction() as conn:
            rows = conn.execute(_Q["job_retry_dead"], params).fetchall()
            _notify_for(conn, rows)
            _audit(conn, audit, len(rows))
            if audit is not None:  # the retry marks live as long as the audit entries
                conn.execute(_Q["job_retries_prune"],
                             {"older_than": audit.retention, "limit": AUDIT_PRUNE_BATCH})
        return len(rows)

    def job_signal(self, job_id: int, name: str, payload_json: str) -> str | None:
        with self._transaction() as conn:
            rows = conn.execute(
                _Q["step_signal"], {"job_id": job_id, "name": name, "payload": payload_json}
            ).fetchall()
            if not rows:
                return None
            if rows[0]["woken_queue"] is not None:
                _notify_for(conn, [{"queue": rows[0]["woken_queue"]}])
        return str(rows[0]["status"])

    def queue_resume(self, queue: str, *, audit: AuditRecord | None = None) -> bool:
        with self._transaction() as conn:
            rows = conn.execute(_Q["queue_resume"], {"queue": queue}).fetchall()
            _notify_for(conn, rows)  # its waiting jobs are fetchable again: wake the workers
            _audit(conn, audit, int(bool(rows)))
        return bool(rows)

    # -- audit log --------------------------------------------------------------------
    def audit_insert(self, record: AuditRecord, count: int = 0) -> int:
        with self._transaction() as conn:
            return _audit(conn, record, count)

    # -- dashboard sessions ---------------------------------------------------------
    def session_insert(self, session_hash: str, token_id: int, lifetime: float) -> None:
        self._execute(_Q["session_insert"], {"session_hash": session_hash,
                                             "token_id": token_id, "lifetime": lifetime})

    def session_token(self, session_hash: str) -> ApiToken | None:
        rows = self._execute(_Q["session_token"], {"session_hash": session_hash})
        return token_from_row(rows[0]) if rows else None

    def session_end(self, session_hash: str) -> None:
        self._execute(_Q["session_end"], {"session_hash": session_hash})

    # -- observability ----------------------------------------------------------------
    # -- workers --------------------------------------------------------------------
    def worker_heartbeat(self, info: WorkerInfo) -> None:
        with self._transaction(pipeline=True) as conn:
            conn.execute(
                _Q["worker_heartbeat"],
                {"id": info.id, "hostname": info.hostname, "pid": info.pid,
                 "queues": list(info.queues), "concurrency": info.concurrency,
                 "started_at": info.started_at, "running": info.running,
                 "meta": dumps(info.meta)},
            )
            conn.execute(_Q["worker_prune"], {"older_than": _WORKER_HISTORY})

    # -- waiting and time -----------------------------------------------------------
    def wait_for_work(self, timeout: float) -> None:
        """Block until a NOTIFY on `conveyor_jobs` (new or released work) or `timeout`.

        One thread at a time reads the LISTEN connection; other threads of this
        process wait for it to tell them. When the connection cannot be opened
        or breaks, this degrades to sleeping out the timeout (the caller polls)
        and tries again a few seconds later.
        """
        deadline = time.monotonic() + timeout
        with self._wake:
            generation = self._wake_generation
        while not self._closing.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._listen_lock.acquire(blocking=False):
                try:
                    with self._wake:
                        if self._wake_generation != generation:
                            return
                    woken = self._listen(left)
                finally:
                    self._listen_lock.release()
                    with self._wake:  # let a waiting thread take over the listening
                        self._wake.notify_all()
                if woken is None:  # no LISTEN connection: poll
                    self._closing.wait(max(0.0, deadline - time.monotonic()))
                    return
                if woken:
                    with self._wake:
                        self._wake_generation += 1
                        self._wake.notify_all()
                    return
            else:
                with self._wake:
                    if self._wake_generation != generation:
                        return
                    self._wake.wait(left)
                    if self._wake_generation != generation:
                        return

    def _listen(self, timeout: float) -> bool | None:
        """Wait on the LISTEN connection: True if notified, False on timeout,
        None when there is no working connection (the caller then polls)."""
        if self._listen_pid != os.getpid():
            # A forked child must not read its parent's socket; it listens on its own.
            self._listen_conn = None
        conn = self._listen_conn
        if conn is None:
            if time.monotonic() < self._listen_retry_at or self._closing.is_set():
                return None
            try:
                conn = psycopg.connect(
                    self.url, autocommit=True, **self._connect_kwargs, **_keepalives(self.url)
                )
                conn.execute(_Q["listen"])
            except psycopg.Error as exc:
                self._listen_retry_at = time.monotonic() + _LISTEN_RETRY_AFTER
                log.warning(
                    "cannot LISTEN on %s (%s); polling until it works again",
                    self.where, str(exc).strip(),
                )
                return None
            self._listen_conn = conn
            self._listen_pid = os.getpid()
        notified = False
        try:
            # Exhaust the generator (stop_after ends it): it holds the connection's lock.
            for _notify in conn.notifies(timeout=timeout, stop_after=1):
                notified = True
        except psycopg.Error as exc:
            log.warning("the LISTEN connection to %s broke (%s); reconnecting", self.where, exc)
            self._drop_listen_connection()
            return None
        return notified

    def _drop_listen_connection(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def now(self) -> float:
        rows = self._execute(_Q["now"], {})
        return float(rows[0]["now"])

    def close(self) -> None:
        self._closing.set()
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.close(timeout=self.connect_timeout)
        with self._wake:
            self._wake.notify_all()
        # A thread inside wait_for_work leaves within its timeout; close after it.
        if self._listen_lock.acquire(timeout=max(self.connect_timeout, 1.0)):
            try:
                self._drop_listen_connection()
            finally:
                self._listen_lock.release()


# -- helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def _callers_transaction(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Run inside the caller's transaction; never commit it.

    In a transaction (explicit, or implicitly begun by a non-autocommit
    connection) the jobs simply join it. A connection in autocommit mode with no
    transaction open gets one for the duration of the batch, so the batch is
    atomic. No savepoints: a savepoint per enqueue would burn subtransactions,
    which PostgreSQL handles badly past 64 per transaction.
    """
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        with conn.transaction():
            yield
    else:
        yield


def _insert_idempotent(cur: psycopg.Cursor[DictRow], job: JobInsert) -> InsertResult:
    params = _insert_params(job)
    # The race "key released between our INSERT and our SELECT" repeats at most a few times.
    for _attempt in range(5):
        cur.execute(_Q["idempotency_release"], params)
        row = cur.execute(_Q["job_insert"], params).fetchone()
        if row is not None:
            return InsertResult(int(row["id"]), True, JobState(row["state"]))
        existing = cur.execute(_Q["job_by_idempotency_key"], params).fetchone()
        if existing is not None:
            return InsertResult(int(existing["id"]), False, JobState(existing["state"]))
    raise BackendError(  # pragma: no cover - needs a key released and retaken five times
        f"idempotent insert of {job.task!r} key {job.idempotency_key!r} kept racing; try again"
    )


def _insert_params(job: JobInsert) -> dict[str, Any]:
    return {**_group_params(job), "args": job.args_json,
            "idempotency_key": job.idempotency_key, "client_id": job.client_id}


def _one_group_due_now(jobs: Sequence[JobInsert]) -> bool:
    """True when every job is due now, has no idempotency key, and all share their options."""
    first = jobs[0]
    if first.idempotency_key is not None or first.run_at is not None or first.delay > 0:
        return False
    key = _group_key(first)
    return all(
        job.idempotency_key is None and _group_key(job) == key for job in jobs[1:]
    )


def _group_key(job: JobInsert) -> tuple[Any, ...]:
    return (job.task, job.queue, job.priority, job.max_attempts, job.run_at, job.delay,
            job.idempotency_window, job.group_key, job.timeout, tuple(job.tags),
            job.trace_context, job.limit_name, job.limit_key)


def _group_params(job: JobInsert) -> dict[str, Any]:
    """The options a group of jobs shares (everything but the arguments)."""
    return {
        "task": job.task,
        "queue": job.queue,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at,
        "delay": job.delay,
        "idempotency_window": job.idempotency_window,
        "group_key": job.group_key,
        "timeout": job.timeout,
        "tags": dumps(list(job.tags)),
        "trace_context": job.trace_context,
        "limit_name": job.limit_name,
        "limit_key": job.limit_key,
    }


def _audit(
    conn: psycopg.Connection[Any], audit: AuditRecord | None, count: int,
    *, target: str | None = None,
) -> int:
    """Write `audit` (if any) in the transaction open on `conn`, and prune expired ones."""
    if audit is None:
        return 0
    row = conn.execute(
        _Q["audit_insert"],
        {"actor": audit.actor, "source": audit.source, "action": audit.action,
         "target": audit.target if target is None else target, "count": count,
         "params": dumps(audit.params)},
    ).fetchall()[0]
    conn.execute(
        _Q["audit_prune"], {"older_than": audit.retention, "limit": AUDIT_PRUNE_BATCH}
    )
    return int(row["id"])


def _runner(conn: psycopg.Connection[Any] | psycopg.Cursor[DictRow]) -> Run:
    """Named queries in the transaction open on `conn` (or a cursor of it), rows as dicts."""
    def run(name: str, params: dict[str, Any]) -> list[DictRow]:
        if isinstance(conn, psycopg.Cursor):
            cur = conn.execute(_Q[name], params)
        else:
            cur = conn.cursor(row_factory=dict_row).execute(_Q[name], params)
        return cur.fetchall() if cur.description is not None else []
    return run


def _notify_queues(conn: psycopg.Connection[Any], queues: Sequence[str]) -> None:
    """One NOTIFY in the current transaction for the queues whose jobs became available."""
    if queues:
        conn.execute(_Q["notify"], {"queues": _notify_payload(queues)})


def _notify_payload(queues: Sequence[str]) -> str:
    payload = ",".join(queues)
    return payload if len(payload.encode()) <= _NOTIFY_PAYLOAD_MAX else ""


def _notify_for(conn: psycopg.Connection[Any], rows: Sequence[DictRow]) -> None:
    """One NOTIFY in the current transaction when `rows` (with a queue) became available."""
    if rows:
        conn.execute(
            _Q["notify"], {"queues": _notify_payload(sorted({row["queue"] for row in rows}))}
        )


def _cut(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket (from the watchdog's thread): the caller's wait on
    it ends at once with "connection lost", and the pool discards the connection."""
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def _nothing() -> None:
    pass


def _check_pool(pool: ConnectionPool[Any]) -> None:
    with contextlib.suppress(Exception):  # a closed pool, a server still away: next time
        pool.check()


def _readable(conn: psycopg.Connection[Any]) -> bool:
    """True when an idle connection's socket has something to read: the server's
    goodbye (an error, then end of file), so the connection must be checked."""
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


def _keepalives(url: str) -> dict[str, Any]:
    """TCP keepalives for the idle LISTEN connection (unless the URL sets them), so
    a connection silently cut by the network is noticed in about half a minute."""
    params = conninfo_to_dict(url)
    if any(key.startswith("keepalives") for key in params):
        return {}
    return {"keepalives": 1, "keepalives_idle": 15, "keepalives_interval": 5,
            "keepalives_count": 3}


_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
"""admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections."""


def translate_error(exc: psycopg.Error, where: str) -> BackendError:
    """A psycopg error as the conveyor error that names the fix."""
    text = str(exc).strip().replace("\n", " ")
    sqlstate = exc.sqlstate
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
        # The server's one-line message, not the statement it quotes after it.
        primary = exc.diag.message_primary or str(exc).strip().splitlines()[0]
        return SchemaError(
            f"the conveyor schema in {where} is missing or out of date ({primary}): "
            "run `conveyor migrate`"
        )
    if isinstance(exc, psycopg.OperationalError) and (
        sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    ):
        return BackendUnavailable(
            f"lost the connection to PostgreSQL at {where} ({text}): check that the server "
            "is up and reachable"
        )
    if isinstance(exc, psycopg.DataError):
        return BackendError(f"PostgreSQL refused a value at {where} ({text})")
    return BackendError(f"PostgreSQL error at {where} ({sqlstate or 'no SQLSTATE'}: {text})")
