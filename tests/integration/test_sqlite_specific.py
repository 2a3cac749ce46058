"""SQLite-only facts: the WAL-reset guard, zero set-up, durability settings."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
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


def test_writes_wait_for_the_cross_process_guard_on_an_affected_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    app = Conveyor(f"sqlite:///{db}")

    @app.task()
    def noop() -> None: ...

    app.migrate()
    guard = app.backend._guard  # type: ignore[attr-defined]
    assert guard.enabled is sqlite_has_wal_reset_bug(sqlite3.sqlite_version)
    if not guard.enabled:
        return  # a fixed SQLite needs no guard: SQLite's own lock orders the writers
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


def test_the_affected_sqlite_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'w.db'}")
    from conveyor.backends.sqlite import backend as sqlite_backend

    sqlite_backend._warned_versions.clear()
    with caplog.at_level(logging.WARNING, logger="conveyor.sqlite"):
        app.migrate()
    warned = [r for r in caplog.records if "WAL-reset bug" in r.getMessage()]
    assert len(warned) == (1 if sqlite_has_wal_reset_bug(sqlite3.sqlite_version) else 0)
    app.close()


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
