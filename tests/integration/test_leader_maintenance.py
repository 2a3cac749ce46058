"""Maintenance (lease rescue and pruning; cron in a role of its own) runs on one
elected worker of a database; when that leader is SIGKILLed, a standby takes over
within the stated bound: the leader's term (`leader_ttl`: the lease, at least three
poll intervals) plus two poll intervals (`takeover_bound`)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState
from conveyor.backends.base import FetchParams, JobFilter
from conveyor.worker.maintenance import CRON_ROLE, LEADER_ROLE, leader_ttl, takeover_bound
from conveyor.worker.settings import WorkerSettings

pytestmark = pytest.mark.slow

LEASE, POLL = 1.0, 0.1
SCHEDULING_SLACK = 1.5
"""Allowance for eight Python processes sharing a busy CI machine's cores."""

WORKER = textwrap.dedent(
    """
    import logging, os, sys
    from conveyor import Conveyor

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(created).3f %(message)s"))
    maintenance = logging.getLogger("conveyor.worker.maintenance")
    maintenance.addHandler(handler)
    maintenance.setLevel(logging.DEBUG)
    maintenance.propagate = False
    app = Conveyor(os.environ["CONVEYOR_URL"], lease={lease}, poll_interval={poll})

    @app.cron("* * * * *")
    @app.task(name="tick", queue="ticks")
    def tick() -> None: ...

    app.worker(worker_id=sys.argv[1], concurrency=1, prune_interval=0.5).run()
    """
).format(lease=LEASE, poll=POLL)

PASS = re.compile(r"^(\S+) worker (\S+): maintenance pass \(maintenance")
CRON_PASS = re.compile(r"^(\S+) worker (\S+): maintenance pass \([^)]*cron")
LEADS = re.compile(r"^(\S+) worker (\S+): leads maintenance")


def leader(url: str, role: str = LEADER_ROLE) -> tuple[str, float] | None:
    """The row of a role's leader: (holder, expires_at), or None."""
    query = f"SELECT holder, expires_at FROM conveyor_leaders WHERE name = '{role}'"
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            row = conn.execute(query).fetchone()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            row = pg.execute(query).fetchone()
    return None if row is None else (str(row[0]), row[1])


def lines(path: Path, pattern: re.Pattern[str]) -> list[tuple[float, str]]:
    found = []
    for line in path.read_text().splitlines():
        match = pattern.match(line)
        if match:
            found.append((float(match.group(1)), match.group(2)))
    return found


def test_eight_workers_run_maintenance_on_one_leader_and_a_standby_replaces_it(
    tmp_path: Path, backend_url: str
) -> None:
    settings = WorkerSettings.build(
        default_queue="default", default_lease=LEASE, default_poll_interval=POLL
    )
    bound = takeover_bound(settings)
    assert leader_ttl(settings) == LEASE and bound == pytest.approx(LEASE + 2 * POLL)
    Conveyor(backend_url).migrate()
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "CONVEYOR_URL": backend_url}
    logs = {f"w{i}": tmp_path / f"w{i}.log" for i in range(8)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py"), name], env=env,
            stderr=log.open("w"),
        )
        for name, log in logs.items()
    }
    try:
        deadline = time.monotonic() + 60
        while leader(backend_url) is None:
            assert time.monotonic() < deadline, "no leader elected"
            time.sleep(0.1)
        time.sleep(1.0)  # every worker is in its fetch loop, asking to lead
        # Sample the leader for a few terms.
        holders, cron_holders = set(), set()
        sample_until = time.monotonic() + 3 * LEASE
        while time.monotonic() < sample_until:
            row, cron_row = leader(backend_url), leader(backend_url, CRON_ROLE)
            assert row is not None and cron_row is not None
            holders.add(row[0])
            cron_holders.add(cron_row[0])
            time.sleep(0.05)
        assert len(holders) == 1 and len(cron_holders) == 1
        (first,) = holders
        ran = {name for name, log in logs.items() if lines(log, PASS)}
        assert ran == {first}, f"maintenance ran on {ran}, the leader is {first}"
        ran_cron = {name for name, log in logs.items() if lines(log, CRON_PASS)}
        assert ran_cron == cron_holders
        passes_before = len(lines(logs[first], PASS))
        assert passes_before >= 3 * LEASE / (2 * POLL) / 2  # it keeps running, renewing

        killed_at = time.time()
        procs[first].send_signal(signal.SIGKILL)
        procs[first].wait(10)
        deadline = time.monotonic() + bound + SCHEDULING_SLACK + 5
        while (row := leader(backend_url)) is None or row[0] == first or not any(
            lines(log, LEADS) for name, log in logs.items() if name != first
        ):
            assert time.monotonic() < deadline, "no standby took over"
            time.sleep(0.05)
        time.sleep(3 * POLL)  # a few passes of the new leader
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(30)
    assert all(p.returncode == 0 for n, p in procs.items() if n != first)
    successors = [
        (at, who) for name, log in logs.items() if name != first for at, who in lines(log, LEADS)
    ]
    took_over_at, second = min(successors)
    assert took_over_at - killed_at <= bound + SCHEDULING_SLACK, (
        f"took {took_over_at - killed_at:.2f}s, bound {bound:.2f}s"
    )
    # One leader at a time: before the kill only the first ran maintenance; after it,
    # passes come from one successor at a time (one, unless it stopped gracefully
    # at the end and resigned to another).
    passes = sorted(pass_ for log in logs.values() for pass_ in lines(log, PASS))
    assert all(name == first for at, name in passes if at < killed_at)
    after = [name for at, name in passes if at >= killed_at]
    assert after and after[0] == second and first not in after
    # Cron fired once per minute that came, whichever worker led it.
    app = Conveyor(backend_url)
    ticks = app.backend.job_list(JobFilter(task="tick", limit=10))
    assert 1 <= len(ticks) <= 2 and len({t.idempotency_key for t in ticks}) == len(ticks)
    app.close()
    # The graceful stops at the end resigned the roles.
    assert leader(backend_url) is None and leader(backend_url, CRON_ROLE) is None


def test_a_lone_worker_leads_rescues_a_dead_workers_job_and_resigns_on_stop(
    app: Conveyor,
) -> None:
    ran = threading.Event()

    @app.task()
    def work() -> None:
        ran.set()

    job = work.enqueue()
    assert app.backend.job_fetch(FetchParams("dead-worker", ["default"], 1, 0.2))
    time.sleep(0.3)  # its lease ran out
    worker = app.worker(install_signals=False, lease=1.0, worker_id="lone")
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert ran.wait(15), "the lone worker did not rescue and run the job"
        assert leader(app.url) is not None and leader(app.url)[0] == "lone"  # type: ignore[index]
    finally:
        worker.stop()
        thread.join(15)
    assert worker.stats.rescued == 1 and worker.stats.maintenance_passes >= 1
    assert job.refresh().record.state is JobState.SUCCEEDED
    # Resigned: a standby need not wait for the term to end.
    assert leader(app.url) is None and leader(app.url, CRON_ROLE) is None
