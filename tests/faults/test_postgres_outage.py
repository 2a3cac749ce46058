"""Fault 6: PostgreSQL restarted, or unreachable, in the middle of a drain.

Both run on the private cluster (never the shared server). The workers must
outlive the outage, back off while the server is gone, resume on their own,
and lose nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
    total = 2_000
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


def test_enqueue_while_postgresql_is_down_fails_fast_writes_nothing_and_spares_the_caller(
    tmp_path: Path, private_pg: PrivateCluster, private_pg_url: str, history: Path
) -> None:
    import psycopg

    from conveyor import BackendUnavailable

    connect_timeout = 2.0
    proxy = Proxy(private_pg.port)
    app = build(proxy.url(private_pg_url), connect_timeout=connect_timeout)
    acknowledged = harness.enqueue_many(app, history, "work", [(0.0,)] * 10)
    elapsed: dict[str, float] = {}
    messages = []
    try:
        with psycopg.connect(private_pg_url) as caller:  # the application's own transaction
            caller.execute("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY)")
            caller.commit()
            caller.execute("INSERT INTO orders VALUES (1)")
            proxy.cut()  # unreachable: connecting hangs until the connect timeout
            for how, call in (
                ("one", lambda: app.tasks["work"].enqueue(100, 0.0)),
                ("many", lambda: app.tasks["work"].enqueue_many([(n, 0.0)
                                                                  for n in range(101, 151)])),
            ):
                started = time.monotonic()
                with pytest.raises(BackendUnavailable) as refused:
                    call()
                elapsed[f"unreachable_{how}_s"] = round(time.monotonic() - started, 2)
                messages.append(str(refused.value))
            caller.execute("INSERT INTO orders VALUES (2)")  # the caller's work goes on
            caller.commit()
            orders = caller.execute("SELECT count(*) FROM orders").fetchone()
        assert orders == (2,)
        proxy.restore()
        fault_end = time.time()
        harness.wait_until(lambda: _enqueues(app, history, 200), 60, "enqueue to work again")
        recovery = time.time() - fault_end
        # Server stopped outright: refused within the connect timeout too.
        private_pg.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as refused:
            app.tasks["work"].enqueue(300, 0.0)
        elapsed["stopped_s"] = round(time.monotonic() - started, 2)
        messages.append(str(refused.value))
        private_pg.start()
    finally:
        proxy.close()
        app.close()
    # The enqueue deadline (unreachable_timeout, 1 s by default), not the connect
    # timeout, bounds the caller's wait, and the error says nothing was stored.
    for message in messages:
        assert "were NOT stored" in message and "within 1s" in message, message
    for key, seconds in elapsed.items():
        assert seconds < 1.0 + 0.5, f"{key}: {seconds}s"
    # Nothing half-written: exactly the acknowledged jobs exist, and a worker runs them.
    direct = build(private_pg_url)
    assert sorted(r.id for r in harness.job_records(direct)) == sorted(
        [*acknowledged, *_ids_of(history, 200)])
    worker = harness.start_worker(tmp_path, private_pg_url, history, "--burst")
    assert worker.wait(120) == 0
    figures = harness.check(direct, history, fault="enqueue-while-down", backend="postgres",
                            notes={"connect_timeout_s": connect_timeout, **elapsed})
    figures.recovery_s = round(recovery, 3)
    direct.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.jobs == 11 and figures.succeeded == 11


def _enqueues(app: Any, history: Path, n: int) -> bool:
    from conveyor import BackendError

    try:
        harness.enqueue_many(app, history, "work", [(0.0,)], first=n)
    except BackendError:
        return False
    return True


def _ids_of(history: Path, n: int) -> list[int]:
    return [int(e.token) for e in harness.read_history(history)
            if e.kind == "enqueue" and e.n == n]


def test_a_worker_cut_off_past_its_lease_cannot_record_its_late_completion(
    tmp_path: Path, private_pg: PrivateCluster, private_pg_url: str, history: Path
) -> None:
    app = build(private_pg_url)
    job = app.tasks["work"].enqueue(0, 4.0)
    harness.record_enqueues(history, [(0, job.id)])
    proxy = Proxy(private_pg.port)
    cut_off_url = proxy.url(private_pg_url)
    cut_off = harness.start_worker(tmp_path, cut_off_url, history, "-c", "1",
                                   env=harness.app_env(cut_off_url, history, LEASE="2"),
                                   log_name="cut_off")
    other = None
    try:
        harness.wait_until(lambda: harness.count_events(history, "start") == 1, 60,
                           "the first worker to start the job")
        proxy.freeze()  # a partition: the worker's heartbeats and writes wait in the network
        fault_at = time.time()
        other = harness.start_worker(tmp_path, private_pg_url, history, "-c", "1",
                                     env=harness.app_env(private_pg_url, history, LEASE="2"),
                                     log_name="other")
        harness.wait_until(lambda: harness.count_events(history, "start") == 2, 60,
                           "the other worker to take the job over")
        harness.wait_until(lambda: harness.count_events(history, "end") >= 1, 60,
                           "the cut-off attempt to finish")
        assert job.refresh().state.value == "running"  # the new owner's attempt runs on
        proxy.restore()  # the late completion reaches the database now
        fault_end = time.time()
        harness.wait_until(
            lambda: "the lease had moved on" in (tmp_path / "cut_off.log").read_text(), 60,
            "the late completion to be refused")
        harness.wait_until(harness.all_finished(app, 1), 60, "the job to finish")
    finally:
        codes = [harness.stop(cut_off)] + ([harness.stop(other)] if other else [])
        proxy.close()
    assert codes == [0, 0]
    runs = [e for e in harness.read_history(history) if e.kind == "start"]
    figures = harness.check(app, history, fault="lease-fencing", backend="postgres",
                            fault_at=fault_at,
                            notes={"partition_s": round(fault_end - fault_at, 2)})
    assert job.refresh().record.result == runs[1].token  # the new owner's, not the late one
    assert job.record.errors[0].type == harness.BROKEN_LEASE
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == 1 and figures.duplicate_completions == 1
