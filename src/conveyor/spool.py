"""The local spool: jobs kept on this host's disk while the database does not answer.

In `when_unreachable="spool"` mode an enqueue whose database does not answer
within `unreachable_timeout` writes its jobs here (one SQLite file per spool
folder, `PRAGMA synchronous=FULL`: a job is on disk when the call returns) and
returns handles that say so (`job.spooled`). A `Forwarder` thread delivers them
to the database as soon as it answers, in spool order, each under its client id:
a job whose client id is already stored is not inserted again, so a forward
retried after an ambiguous failure (or run by two processes sharing the folder)
never makes two jobs. A job with an idempotency key whose key is taken resolves
to the existing job, as a direct enqueue would.

Bounds: `max_jobs` jobs, and no new job once the oldest one is `max_age` seconds
old (the database has been gone too long): `SpoolFullError` then, never a
silent drop. Nothing is ever removed from the spool but by a forward that the
database confirmed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

from conveyor.backends.base import InsertResult, JobInsert
from conveyor.errors import BackendError, ConfigurationError, SpoolFullError

log = logging.getLogger("conveyor.spool")

SPOOL_FORMAT = 1
"""The layout of the spool file this code writes; a file of a higher one is refused."""
SPOOL_FILE = "spool.sqlite3"
FORWARD_BATCH = 200
"""Jobs forwarded in one transaction."""


@dataclass(frozen=True, slots=True)
class SpooledJob:
    seq: int
    spooled_at: float
    job: JobInsert


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    path: str
    depth: int
    oldest_age: float | None
    """Seconds since the oldest spooled job was written, None when empty."""
    forwarded: int
    """Jobs this process forwarded since it started."""


class Spool:
    """One spool file. Thread-safe; several processes may share a folder."""

    def __init__(self, folder: str, *, max_jobs: int = 100_000, max_age: float = 86_400.0) -> None:
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, SPOOL_FILE)
        self.max_jobs = max_jobs
        self.max_age = max_age
        self.forwarded = 0
        self._lock = threading.Lock()
        self._conn = self._open()

    def __repr__(self) -> str:
        return f"<Spool {self.path}>"

    def _open(self) -> sqlite3.Connection:
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the spool folder {self.folder!r} ({exc}): give spool_path= a "
                "folder this process can write"
            ) from exc
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise ConfigurationError(
                f"the spool folder {self.folder!r} is not writable by this process: give "
                "spool_path= a folder it can write, or fix its permissions"
            )
        try:
            conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS spool_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            conn.execute(
                "INSERT OR IGNORE INTO spool_meta (key, value) VALUES ('format', ?)",
                (str(SPOOL_FORMAT),),
            )
            row = conn.execute("SELECT value FROM spool_meta WHERE key = 'format'").fetchone()
            found = int(row[0])
            if found > SPOOL_FORMAT:
                conn.close()
                raise ConfigurationError(
                    f"the spool {self.path!r} was written by a newer conveyor (format {found}, "
                    f"this one reads {SPOOL_FORMAT}): run that version to flush it "
                    "(`conveyor spool flush`), or give this app another spool_path="
                )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS spool_jobs ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " client_id TEXT NOT NULL UNIQUE,"
                " spooled_at REAL NOT NULL,"
                " job TEXT NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot open the spool {self.path!r} ({exc}): give spool_path= a folder on a "
                "local, writable disk"
            ) from exc
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add(self, jobs: Sequence[JobInsert]) -> None:
        """Write jobs (each with a client id), durably, or raise `SpoolFullError`."""
        now = time.time()
        try:
            with self._write() as conn:
                depth, oldest = conn.execute(
                    "SELECT count(*), min(spooled_at) FROM spool_jobs"
                ).fetchone()
                if depth + len(jobs) > self.max_jobs:
                    raise SpoolFullError(
                        f"the spool {self.path} holds {depth} jobs, its limit is "
                        f"{self.max_jobs}: the database has not answered for a while; nothing "
                        "was written (raise spool_max_jobs, or bring the database back)"
                    )
                if oldest is not None and now - oldest > self.max_age:
                    raise SpoolFullError(
                        f"the oldest job in the spool {self.path} waits for "
                        f"{now - oldest:.0f}s, longer than spool_max_age ({self.max_age:g}s): "
                        "nothing was written; bring the database back, or raise spool_max_age"
                    )
                conn.executemany(
                    "INSERT INTO spool_jobs (client_id, spooled_at, job) VALUES (?, ?, ?)",
                    [(job.client_id, now, _encode(job)) for job in jobs],
                )
        except sqlite3.Error as exc:
            raise SpoolFullError(
                f"cannot write the spool {self.path} ({exc}); nothing was written"
            ) from exc

    def peek(self, limit: int = FORWARD_BATCH) -> list[SpooledJob]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, spooled_at, job FROM spool_jobs ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [SpooledJob(int(seq), float(at), _decode(text)) for seq, at, text in rows]

    def remove(self, seqs: Sequence[int]) -> None:
        """Drop jobs the database confirmed (counted as forwarded)."""
        with self._write() as conn:
            conn.executemany("DELETE FROM spool_jobs WHERE seq = ?", [(s,) for s in seqs])
            self.forwarded += len(seqs)

    def status(self) -> SpoolStatus:
        with self._lock:
            depth, oldest = self._conn.execute(
                "SELECT count(*), min(spooled_at) FROM spool_jobs"
            ).fetchone()
        age = None if oldest is None else max(0.0, time.time() - float(oldest))
        return SpoolStatus(self.path, int(depth), age, self.forwarded)

    def forward(
        self,
        store: Callable[[list[JobInsert]], list[InsertResult]],
        resolve: Callable[[list[JobInsert]], list[InsertResult | None]],
    ) -> int:
        """Forward one batch, oldest first; returns how many left the spool.

        `resolve` finds the jobs already stored (by client id); `store` inserts the
        others in one transaction. Only then are they removed here: a crash between
        the two forwards them again, and the client id finds them.
        """
        batch = self.peek()
        if not batch:
            return 0
        found = resolve([s.job for s in batch])
        missing = [s.job for s, r in zip(batch, found, strict=True)
                   if r is None or not r.created]
        if missing:
            store(missing)
        self.remove([s.seq for s in batch])
        return len(batch)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()


class Forwarder:
    """The thread that empties a spool into the database, with backoff while it is away."""

    def __init__(
        self,
        spool: Spool,
        store: Callable[[list[JobInsert]], list[InsertResult]],
        resolve: Callable[[list[JobInsert]], list[InsertResult | None]],
        *,
        min_delay: float = 0.05,
        max_delay: float = 5.0,
    ) -> None:
        self.spool = spool
        self._store = store
        self._resolve = resolve
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.last_error: str | None = None

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-spool-forwarder", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def forward_all(self) -> int:
        """Forward until the spool is empty; raises the database's error if it fails."""
        total = 0
        while True:
            n = self.spool.forward(self._store, self._resolve)
            if n == 0:
                return total
            total += n

    def _run(self) -> None:
        delay = self._min_delay
        while not self._stop.is_set():
            try:
                moved = self.spool.forward(self._store, self._resolve)
            except BackendError as exc:
                self.last_error = str(exc)
                log.warning("spool forward failed, retrying in %.2fs: %s", delay, exc)
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(self._max_delay, delay * 2)
                continue
            except Exception:  # the thread must outlive any one bad batch
                log.exception("spool forward failed, retrying in %.2fs", delay)
                self._stop.wait(delay)
                delay = min(self._max_delay, delay * 2)
                continue
            self.last_error = None
            delay = self._min_delay
            if moved == 0:
                self._wake.wait(1.0)
                self._wake.clear()

    def stop(self, flush_timeout: float = 1.0) -> None:
        """Try to empty the spool for up to `flush_timeout` seconds, then stop the
        thread; what is left stays on disk for the next start."""
        deadline = time.monotonic() + flush_timeout
        while time.monotonic() < deadline and self._thread is not None \
                and self._thread.is_alive() and self.spool.status().depth > 0:
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.1, deadline - time.monotonic()) + 5.0)


def _encode(job: JobInsert) -> str:
    fields = asdict(job)
    fields["tags"] = list(job.tags)
    return json.dumps(fields, separators=(",", ":"))


def _decode(text: str) -> JobInsert:
    fields = json.loads(text)
    fields["tags"] = tuple(fields.get("tags", ()))
    known = set(JobInsert.__dataclass_fields__)
    return JobInsert(**{k: v for k, v in fields.items() if k in known})


__all__ = ["SPOOL_FORMAT", "Forwarder", "Spool", "SpoolStatus", "SpooledJob"]
