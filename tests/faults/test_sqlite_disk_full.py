"""Fault 8: the disk holding the SQLite file fills up during enqueue."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import BackendError
from tests.conftest import IN_CI
from tests.faults import harness
from tests.faults.faultapp import build

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 10 MB tmpfs (mounting needs root: under CI=true a failed mount fails the test)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_during_enqueue_is_a_clear_error_and_damages_nothing(
    tmp_path: Path, small_disk: Path, history: Path
) -> None:
    db_file = small_disk / "jobs.db"
    url = f"sqlite:///{db_file}"
    app = build(url)
    app.migrate()
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (7 * 2**20))  # the space we give back afterwards
    payload = "x" * 2_000
    n = 0
    # Batches of 20 until one does not fit, then single jobs until none fits either.
    for batch in (20, 1):
        with pytest.raises(BackendError) as full:
            while n < 100_000:  # bounded: 3 MB fill long before
                harness.enqueue_many(app, history, "work", [(0.0, payload)] * batch,
                                     first=n)
                n += batch
        assert "disk holding the SQLite file is full" in str(full.value)
        n += batch  # the refused n is not reused
    acknowledged = harness.count_events(history, "enqueue")
    assert acknowledged > 0
    app.close()
    # The file opens and is sound; every acknowledged job is there, nothing else.
    with sqlite3.connect(db_file) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = db.execute("SELECT count(*) FROM conveyor_jobs").fetchone()[0]
    assert stored == acknowledged
    # A worker started on the full disk cannot lease anything: it backs off, loses nothing.
    env = harness.app_env(url, history, LEASE="1")
    worker = harness.start_worker(tmp_path, url, history, "-c", "4", env=env)
    try:
        harness.wait_until(
            lambda: "backend unavailable" in (tmp_path / "worker.log").read_text(), 60,
            "the worker to meet the full disk")
        time.sleep(5.0)  # several failures: the backoff has grown to seconds
        assert harness.count_events(history, "start") == 0
        # Space comes back: the worker resumes on its next heartbeat, enqueue works again.
        filler.unlink()
        fault_end = time.time()
        harness.wait_until(lambda: harness.count_events(history, "end") > 0, 60,
                           "the worker to resume")
        resumed = time.time() - fault_end
        # on its next heartbeat (every 0.33 s), not after the rest of a backoff step
        assert resumed < 3.0
        app = build(url)
        harness.enqueue_many(app, history, "work", [(0.0,)] * 20, first=n)
        harness.wait_until(harness.all_finished(app, acknowledged + 20), 120,
                           "every job to finish")
    finally:
        assert harness.stop(worker) == 0
    figures = harness.check(app, history, fault="disk-full", backend="sqlite",
                            notes={"acknowledged_before_full": acknowledged,
                                   "disk_mb": 10, "free_mb_at_start": 3})
    figures.recovery_s = round(resumed, 3)  # from space freed to the worker's next completion
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == acknowledged + 20
