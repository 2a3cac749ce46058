"""SQLite-only facts: the WAL-reset guard, zero set-up, durability settings."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.backends.base import SCHEMA_VERSION
from conveyor.backends.sqlite.backend import sqlite_has_wal_reset_bug

HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(0.5)
    released = time.time()
    fcntl.flock(fd, fcntl.LOCK_UN)
    print(released, flush=True)
    """
)


def test_writes_wait_for_the_cross_process_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    app = Conveyor(f"sqlite:///{db}")

    @app.task()
    def noop() -> None: ...

    app.migrate()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"{db}-conveyor.lock"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    noop.enqueue()
    enqueued = time.time()
    released = float(holder.stdout.readline())
    holder.wait(10)
    assert enqueued >= released  # the write waited for the other process's turn
    app.close()


def test_the_wal_reset_warning_is_said_once_and_only_for_a_writer_outside_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "w.db"
    app = Conveyor(f"sqlite:///{db}")

    @app.task()
    def noop() -> None: ...

    from conveyor.backends.sqlite import backend as sqlite_backend

    sqlite_backend._warned_versions.clear()
    with caplog.at_level(logging.WARNING, logger="conveyor.sqlite"):
        app.migrate()
        noop.enqueue()
        app.get_job(1)
        # conveyor's own writers are ordered by its lock file: nothing to say
        assert not [r for r in caplog.records if "WAL-reset bug" in r.getMessage()]
        with sqlite3.connect(db) as own:  # the caller's connection is not ordered by it
            noop.using(connection=own).enqueue()
            noop.using(connection=own).enqueue()
    warned = [r for r in caplog.records if "WAL-reset bug" in r.getMessage()]
    assert len(warned) == (1 if sqlite_has_wal_reset_bug(sqlite3.sqlite_version) else 0)
    app.close()


def test_a_cli_call_says_nothing_about_the_sqlite_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    Conveyor(url).migrate()
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "status", "tests.faults.faultapp:app"],
        check=False, capture_output=True, text=True, timeout=60, cwd=repo,
        env={**os.environ, "CONVEYOR_URL": url, "PYTHONPATH": str(repo)},
    )
    assert done.returncode == 0, done.stderr
    assert "WAL-reset" not in done.stdout + done.stderr


def test_the_database_file_is_created_and_migrated_on_first_use(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    app = Conveyor(f"sqlite:///{db}")

    @app.task()
    def noop() -> None: ...

    noop.enqueue()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT max(version) FROM conveyor_schema").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    app.close()


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    from conveyor import ConfigurationError

    app = Conveyor(f"sqlite:///{tmp_path / 'nope' / 'jobs.db'}")
    with pytest.raises(ConfigurationError, match="does not exist"):
        app.get_job(1)


def test_a_stalled_write_lock_holder_credits_the_stall_to_every_running_lease(
    tmp_path: Path,
) -> None:
    """While one process holds the write lock nobody can renew a lease, so that time does
    not count against any lease: the holder extends them all before it lets go."""
    from conveyor.backends.base import FetchParams, JobFilter

    app = Conveyor(f"sqlite:///{tmp_path / 'stall.db'}", lease=2.0)

    @app.task()
    def noop() -> None: ...

    noop.enqueue()
    noop.enqueue()
    backend = app.backend
    held = backend.job_fetch(FetchParams("w1", ["default"], 2, 2.0))
    assert len(held) == 2
    noop.enqueue()
    [gone] = backend.job_fetch(FetchParams("dead", ["default"], 1, 0.2))
    time.sleep(0.3)  # its lease ran out before the stall: no credit for it

    def leases() -> dict[int, float]:
        return {j.id: j.lease_expires_at.timestamp() for j in backend.job_list(JobFilter())
                if j.lease_expires_at is not None}

    before = leases()
    with backend._write():  # type: ignore[attr-defined]
        time.sleep(0.1)  # an ordinary (if slow) transaction: not a stall
    assert leases() == before
    with backend._write():  # type: ignore[attr-defined]
        time.sleep(2.5)  # longer than the lease, as a SIGSTOPped holder would be
    after = leases()
    assert all(after[j.id] - before[j.id] >= 2.5 for j in held)
    assert after[gone.id] == before[gone.id]
    # the leases did not run out (nobody could renew them); the one that had, did
    assert backend.job_rescue() == [gone.id]
    time.sleep(2.1)
    assert len(backend.job_rescue()) == 2  # with writes accepted, they do
    app.close()


STOPPED_HOLDER = textwrap.dedent(
    """
    import sys, time
    from conveyor.backends.sqlite.backend import SQLiteBackend
    backend = SQLiteBackend(sys.argv[1])
    with backend._write():
        print("held", flush=True)
        time.sleep(60)  # as if stopped: it is killed before it lets go
    """
)


def test_a_holder_killed_while_stalled_has_its_stall_credited_by_the_writer_that_waited(
    tmp_path: Path,
) -> None:
    import signal
    import threading

    from conveyor.backends.base import FetchParams

    url = f"sqlite:///{tmp_path / 'killed.db'}"
    app = Conveyor(url, lease=2.0)

    @app.task()
    def noop() -> None: ...

    noop.enqueue()
    backend = app.backend
    [job] = backend.job_fetch(FetchParams("w1", ["default"], 1, 2.0))
    holder = subprocess.Popen(
        [sys.executable, "-c", STOPPED_HOLDER, url], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    rescued: list[list[int]] = []
    waiter = threading.Thread(target=lambda: rescued.append(backend.job_rescue()))
    waiter.start()  # waits on the lock from now on, as every live writer would
    time.sleep(2.5)  # longer than the lease
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    waiter.join(30)
    assert rescued == [[]]  # the wait was credited before the rescue judged the lease
    record = app.get_job(job.id)
    assert record is not None and record.state.value == "running"
    app.close()


def test_the_stall_threshold_follows_the_shortest_lease_within_its_bounds(
    tmp_path: Path,
) -> None:
    from conveyor.backends.sqlite.backend import SQLiteBackend, WriteGuard

    backend = SQLiteBackend(f"sqlite:///{tmp_path / 't.db'}")
    assert backend._stall_threshold == 1.0  # nothing leased yet
    backend._learn_lease(30.0)
    assert backend._stall_threshold == 1.0
    backend._learn_lease(2.0)
    assert backend._stall_threshold == 0.5
    backend._learn_lease(0.1)
    assert backend._stall_threshold == 0.25  # an ordinary slow commit is no stall
    backend._learn_lease(30.0)
    assert backend._stall_threshold == 0.25  # the shortest lease in use rules
    # The mark a killed holder leaves: only the reader's own wait counts.
    assert WriteGuard._orphaned_for(b" " * 64, 10.0, 12.0) == 0.0
    assert WriteGuard._orphaned_for(b"9.0 123", 10.0, 12.0) == 2.0
    assert WriteGuard._orphaned_for(b"11.0 123", 10.0, 12.0) == 1.0
    assert WriteGuard._orphaned_for(b"999999.0 1", 10.0, 12.0) == 0.0  # before a reboot
    assert WriteGuard._orphaned_for(b"garbage", 10.0, 12.0) == 0.0
    backend.close()


def test_an_enqueue_deadline_bounds_its_own_lock_wait_and_no_other_write(
    tmp_path: Path,
) -> None:
    """Back-to-back enqueues set the connection's busy timeout once, not twice per call;
    any other write on that connection gets the full busy timeout back first."""
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}?busy_timeout=20",
                   unreachable_timeout=0.5)

    @app.task()
    def noop() -> None: ...

    backend = app.backend

    def busy_ms() -> int:
        return int(backend._conn.execute("PRAGMA busy_timeout").fetchone()[0])  # type: ignore[attr-defined]

    noop.enqueue()
    assert 480 <= busy_ms() <= 500
    for _ in range(20):
        noop.enqueue()
        assert 480 <= busy_ms() <= 500
    assert backend.job_rescue() == []  # a worker's write, on the same thread
    assert busy_ms() == 20_000
    noop.enqueue()
    assert 480 <= busy_ms() <= 500
    app.close()


def test_the_connection_of_a_thread_that_ended_is_closed(tmp_path: Path) -> None:
    """Each thread has its own connection; one a finished thread left behind is closed
    when the next thread connects, so short-lived threads (a prune pass, a step's
    timeout) do not gather open files for the life of the process."""
    path = tmp_path / "jobs.db"
    app = Conveyor(f"sqlite:///{path}")

    def open_files() -> int:
        fds = Path("/proc/self/fd")
        found = 0
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == str(path):
                    found += 1
        return found

    def use() -> None:
        app.backend.queue_stats()

    for _ in range(20):
        thread = threading.Thread(target=use)
        thread.start()
        thread.join()
    # The last thread's connection (closed when the next thread connects), and at
    # most the file's first one: not one per thread that ever ran.
    assert open_files() <= 2
    app.close()
