"""Fault 6: PostgreSQL restarted, or unreachable, in the middle of a drain.

Both run on the private cluster (never the shared server). The workers must
outlive the outage, back off while the server is gone, resume on their own,
and lose nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.faultapp import build
from tests.faults.pgcluster import PrivateCluster
from tests.faults.proxy import Proxy

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.postgres]

OUTAGE = 8.0
"""Seconds PostgreSQL stays unreachable: longer than the lease (3 s) and than the
worker's first five backoff steps, so leases expire and backoff is exercised."""


def test_a_postgresql_restart_mid_drain_loses_nothing_and_strands_nothing(
    tmp_path: Path, private_pg: PrivateCluster, private_pg_url: str, history: Path
) -> None:
    total = 6_000
    app = build(private_pg_url)
    harness.enqueue_many(app, history, "work", [(0.0,)] * total)
    env = harness.app_env(private_pg_url, history, LEASE="3")
    fleet = [harness.start_worker(tmp_path, private_pg_url, history, "-c", "8",
                                  log_name=f"worker{i}", env=env) for i in range(2)]
    try:
        harness.wait_until(lambda: harness.count_events(history, "end") > total // 5, 300,
                           "a fifth done")
        fault_at = time.time()
        private_pg.restart()
        fault_end = time.time()
        harness.wait_until(harness.all_finished(app, total), 300, "all jobs done")
        assert all(proc.poll() is None for proc in fleet), "a worker died with the database"
    finally:
        codes = [harness.stop(proc) for proc in fleet]
    assert codes == [0, 0]
    figures = harness.check(app, history, fault="postgres-restart", backend="postgres",
                            fault_at=fault_at, fault_end=fault_end,
                            notes={"restart_s": round(fault_end - fault_at, 2)})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total


def test_postgresql_unreachable_mid_drain_workers_back_off_resume_and_lose_nothing(
    tmp_path: Path, private_pg: PrivateCluster, private_pg_url: str, history: Path
) -> None:
    total = 800  # through the test's proxy, a drain runs at a few dozen jobs a second
    app = build(private_pg_url)
    harness.enqueue_many(app, history, "work", [(0.01,)] * total)
    proxy = Proxy(private_pg.port)
    through_proxy = proxy.url(private_pg_url)
    env = harness.app_env(through_proxy, history, LEASE="3", CONNECT_TIMEOUT="1")
    fleet = [harness.start_worker(tmp_path, through_proxy, history, "-c", "4",
                                  log_name=f"worker{i}", env=env) for i in range(2)]
    try:
        harness.wait_until(lambda: harness.count_events(history, "end") > total // 10, 300,
                           "a tenth done")
        fault_at = time.time()
        proxy.cut()
        time.sleep(OUTAGE)
        during = harness.count_events(history, "start")
        proxy.restore()
        fault_end = time.time()
        harness.wait_until(harness.all_finished(app, total), 300, "all jobs done")
        assert all(proc.poll() is None for proc in fleet), "a worker died with the network"
    finally:
        codes = [harness.stop(proc) for proc in fleet]
        proxy.close()
    assert codes == [0, 0]
    logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in range(2))
    assert "backend unavailable, retrying with backoff" in logs
    assert "backend back after" in logs
    figures = harness.check(app, history, fault="postgres-unreachable", backend="postgres",
                            fault_at=fault_at, fault_end=fault_end,
                            notes={"outage_s": OUTAGE, "started_before_restore": during})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == total
