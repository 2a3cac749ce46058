"""PostgreSQL with real processes: a fleet drains 100,000 jobs exactly once per job,
and a skewed worker clock changes nothing. (A PostgreSQL restart mid-drain is a
fault test, on a private cluster: tests/faults/test_postgres_outage.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, JobState
from conveyor.backends.base import FetchParams

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FLEET_APP = textwrap.dedent(
    """
    import os, sys
    from conveyor import Conveyor

    app = Conveyor(os.environ["CONVEYOR_URL"], lease=float(os.environ.get("LEASE", "2")),
                   poll_interval=0.2)
    log = open(os.environ["EXEC_LOG"], "a", buffering=1)   # line-buffered O_APPEND writes

    @app.task(name="work")
    def work(n: int) -> None:
        log.write(f"{n}\\n")

    if __name__ == "__main__":
        sys.exit(app.worker(concurrency=int(os.environ.get("SLOTS", "8")), grace=10).run())
    """
)


@pytest.fixture
def pg_url(pg_database: str) -> str:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE conveyor_jobs, conveyor_workers, conveyor_job_steps, conveyor_job_context "
            "RESTART IDENTITY"
        )
    return pg_database


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT state, count(*) FROM conveyor_jobs GROUP BY state").fetchall()
    return {state: n for state, n in rows}


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def start_fleet(
    tmp_path: Path, url: str, processes: int, **env: str
) -> list[subprocess.Popen[bytes]]:
    (tmp_path / "fleet.py").write_text(FLEET_APP)
    environment = {**os.environ, "CONVEYOR_URL": url, "EXEC_LOG": str(tmp_path / "exec.log"),
                   **env}
    return [subprocess.Popen([sys.executable, str(tmp_path / "fleet.py")], env=environment)
            for _ in range(processes)]


def stop_fleet(fleet: list[subprocess.Popen[bytes]]) -> list[int]:
    for proc in fleet:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in fleet:
        try:
            codes.append(proc.wait(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


def enqueue(url: str, total: int) -> None:
    app = Conveyor(url)

    @app.task(name="work")
    def work(n: int) -> None: ...

    for start in range(0, total, 10_000):
        work.enqueue_many([(n,) for n in range(start, min(total, start + 10_000))])
    app.close()


def test_four_processes_of_eight_threads_drain_100k_jobs_each_exactly_once(
    tmp_path: Path, pg_url: str
) -> None:
    total = 100_000
    enqueue(pg_url, total)
    fleet = start_fleet(tmp_path, pg_url, 4, LEASE="2")
    try:
        # Break one worker's leases on purpose: freeze it past its lease, then let it go.
        wait_until(lambda: counts(pg_url).get("succeeded", 0) > total // 4, 300, "a quarter done")
        fleet[0].send_signal(signal.SIGSTOP)
        time.sleep(3.5)
        fleet[0].send_signal(signal.SIGCONT)
        wait_until(lambda: counts(pg_url).get("succeeded", 0) == total, 600, "all jobs done")
    finally:
        codes = stop_fleet(fleet)
    assert codes == [0, 0, 0, 0]
    assert counts(pg_url) == {"succeeded": total}
    runs = Counter(int(line) for line in (tmp_path / "exec.log").read_text().split())
    assert set(runs) == set(range(total))  # every job ran
    with psycopg.connect(pg_url) as conn:
        broken = conn.execute(
            "SELECT count(*) FROM conveyor_jobs WHERE errors @> "
            """'[{"type": "conveyor.errors.LeaseExpired"}]'"""
        ).fetchone()
    assert broken is not None
    extra = sum(runs.values()) - total
    # Extra executions come only from the leases broken by the freeze.
    assert extra <= broken[0]
    print(f"\n100k drain: executions={sum(runs.values())} extra={extra} broken_leases={broken[0]}")


def test_a_skewed_worker_clock_neither_runs_early_nor_steals_leases(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Conveyor(pg_url, poll_interval=0.05)
    ran: list[str] = []

    @app.task()
    def mark(name: str) -> None:
        ran.append(name)

    later = mark.using(delay=600).enqueue("later")
    leased = mark.enqueue("leased")
    held = app.backend.job_fetch(FetchParams("healthy-worker", ["default"], 1, 60))
    assert [j.id for j in held] == [leased.id]
    now = mark.enqueue("now")

    real_time = time.time
    for skew in (+3600.0, -3600.0):  # an hour fast, then an hour slow
        monkeypatch.setattr(time, "time", lambda skew=skew: real_time() + skew)
        app.worker(burst=True, install_signals=False).run()
    monkeypatch.setattr(time, "time", real_time)

    assert later.refresh().state is JobState.SCHEDULED  # not run early by a fast clock
    assert leased.refresh().state is JobState.RUNNING  # lease not stolen by a fast clock
    assert leased.record.lease_owner == "healthy-worker"
    assert now.refresh().state is JobState.SUCCEEDED  # due work not lost to a slow clock
    assert ran == ["now"]
    app.close()


def test_enqueue_while_postgresql_is_unreachable_fails_fast_and_writes_nothing() -> None:
    from conveyor import BackendUnavailable

    app = Conveyor("postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout=1.0)

    @app.task()
    def noop() -> None: ...

    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        noop.enqueue()
    assert time.monotonic() - started < 5.0
    app.close()


