"""A worker SIGSTOPped past the lease while two others drain; on SQLite, stopped while it
holds the write lock, so that nobody can commit anything until it resumes.

While the stopped process holds the lock, the healthy workers' heartbeats and
completions wait for it. Their leases must not be judged expired by that wait:
no `LeaseExpired` may name a worker that was never stopped. On PostgreSQL the
same stop blocks nobody (row locks only), and the stopped worker's own leases
expire and are rescued as usual.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conveyor.backends.sqlite.backend import parse_sqlite_url
from conveyor.types import JobRecord
from tests.faults import harness
from tests.faults.faultapp import build

pytestmark = [pytest.mark.faults, pytest.mark.slow]

LEASE = 1.5
PAUSE = 3.0  # twice the lease


def holds_flock(pid: int, path: Path) -> bool:
    """Whether process `pid` holds the flock on `path` (Linux: /proc/locks)."""
    if not path.exists():
        return False
    inode = os.stat(path).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[4] == str(pid) \
                and fields[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def stop_while_holding_the_lock(proc: subprocess.Popen[bytes], lock: Path) -> None:
    """SIGSTOP `proc` at a moment it holds the write lock (retrying until it does)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if holds_flock(proc.pid, lock):
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.02)  # the stop is delivered asynchronously
            if holds_flock(proc.pid, lock):
                return
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.0005)
    raise AssertionError("the worker never held the write lock when stopped")


def started_after_finish(history: Path, records: list[JobRecord]) -> set[int]:
    """Succeeded jobs whose last execution started after the job was finished, with the
    result of the execution that finished it kept."""
    events = harness.read_history(history)
    job_of = {e.n: int(e.token) for e in events if e.kind == "enqueue"}
    starts: dict[int, list[harness.Event]] = {}
    for e in events:
        if e.kind == "start":
            starts.setdefault(job_of[e.n], []).append(e)
    late = set()
    for r in records:
        runs = starts.get(r.id, [])
        if r.finished_at is None or len(runs) < 2 or runs[-1].at <= r.finished_at.timestamp():
            continue
        before = [e.token for e in runs if e.at <= r.finished_at.timestamp()]
        if before and r.result == before[-1]:
            late.add(r.id)
    return late


def test_a_stopped_lock_holder_expires_no_lease_of_the_workers_that_kept_trying(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    backend, url = fault_backend
    total = 400
    app = build(url, lease=LEASE)
    harness.enqueue_many(app, history, "work", [(0.05,)] * total)
    env = harness.app_env(url, history, LEASE=str(LEASE))
    names = ["stopped", "healthy1", "healthy2"]
    workers = [harness.start_worker(tmp_path, url, history, "-c", "4", env=env, log_name=name)
               for name in names]
    victim = workers[0]
    try:
        harness.wait_until(lambda: harness.count_events(history, "end") >= 60, 60,
                           "the workers to be busy")
        fault_at = time.time()
        if backend == "sqlite":
            lock = Path(parse_sqlite_url(url)[0] + "-conveyor.lock")
            stop_while_holding_the_lock(victim, lock)
        else:
            victim.send_signal(signal.SIGSTOP)
        stopped_at = time.time()
        time.sleep(PAUSE)
        victim.send_signal(signal.SIGCONT)
        fault_end = time.time()
        harness.wait_until(harness.all_finished(app, total), 120, "every job to finish")
    finally:
        codes = [harness.stop(w) for w in workers]
    assert codes == [0, 0, 0]
    records = harness.job_records(app)
    # Proof of the stall on SQLite: no completion was committed while the holder was stopped.
    committed_during = sum(
        1 for r in records if r.finished_at is not None
        and stopped_at + 0.1 < r.finished_at.timestamp() < fault_end - 0.1
    )
    wrongly_expired = [
        (r.id, e.message) for r in records for e in r.errors
        if e.type == harness.BROKEN_LEASE and f":{victim.pid}:" not in e.message
    ]
    late = started_after_finish(history, records)
    figures = harness.check(
        app, history, fault="stopped-lock-holder", backend=backend, fault_at=fault_at,
        fault_end=fault_end,
        notes={"lease_s": LEASE, "paused_s": round(fault_end - stopped_at, 2),
               "completions_committed_during_pause": committed_during,
               "leases_expired_of_never_stopped_workers": len(wrongly_expired),
               "started_after_finish": len(late)},
    )
    # A resumed worker may still start a prefetched job that another worker has finished
    # meanwhile (its completion is refused): the checker would count that as a stale
    # completion, since the stored result is not the last execution's. It is not one.
    figures.stale_completions -= sum(1 for r in records if r.id in late)
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total
    assert not wrongly_expired, f"leases of never-stopped workers rescued: {wrongly_expired[:3]}"
    if backend == "sqlite":
        assert committed_during == 0, "the stopped process did not stall the writers"
        # Nobody could write while it was stopped, so no lease ran out, its own included.
        assert figures.broken_leases == 0
    else:
        assert committed_during > 0, "on PostgreSQL a stopped worker blocks nobody"
