"""Flow-control limits under faults (docs/flow-control.md): a worker SIGKILLed while
it holds concurrency slots frees them within its lease, and a PostgreSQL restart
in the middle of a rate-limited drain lets no limit be exceeded."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.faultapp import build
from tests.faults.pgcluster import PrivateCluster

pytestmark = [pytest.mark.faults, pytest.mark.slow]

LEASE = 2.0


def most_running_per_key(events: list[harness.Event], key_of: dict[int, str]) -> int:
    """The most executions of one key running at any instant (killed ones never end)."""
    running: dict[str, int] = {}
    most = 0
    for e in sorted(events, key=lambda e: (e.at, e.kind == "start")):
        if e.kind not in ("start", "end"):
            continue
        key = key_of[e.n]
        running[key] = running.get(key, 0) + (1 if e.kind == "start" else -1)
        most = max(most, running[key])
    return most


def test_a_killed_worker_holding_slots_frees_them_within_its_lease(
    tmp_path: Path, fault_backend: tuple[str, str], history: Path
) -> None:
    """2 per key: a worker holds both slots of key `k` and is SIGKILLed; another worker
    starts the key's next job once the dead one's leases run out (not before: never
    more than 2 running), within the lease plus one poll."""
    backend, url = fault_backend
    app = build(url)
    keyed = app.tasks["keyed_work"].using(limit_key="k")
    jobs = app.enqueue_jobs([keyed.prepare(n, 1.0) for n in range(4)])
    harness.record_enqueues(history, [(n, j.id) for n, j in enumerate(jobs) if j.id])
    env = harness.app_env(url, history, LEASE=str(LEASE))
    victim = harness.start_worker(tmp_path, url, history, "-c", "4", log_name="victim", env=env)
    harness.wait_until(lambda: harness.count_events(history, "start") >= 2, 60,
                       "the victim holding both slots")
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.wait()
    survivor = harness.start_worker(tmp_path, url, history, "-c", "4", log_name="survivor",
                                    env=env)
    try:
        harness.wait_until(harness.all_finished(app, 4), 90, "every job done")
    finally:
        assert harness.stop(survivor) == 0
    events = harness.read_history(history)
    ended = {e.token for e in events if e.kind == "end"}
    # The killed executions stopped with their process.
    events += [harness.Event(killed_at, "end", e.n, e.token, e.pid) for e in events
               if e.kind == "start" and e.token not in ended and e.pid == victim.pid]
    starts = sorted(e.at for e in events if e.kind == "start")
    freed_after = starts[2] - killed_at  # the first start after the two killed ones
    most = most_running_per_key(events, {n: "k" for n in range(4)})
    figures = harness.check(app, history, fault="limit-slots-sigkill", backend=backend,
                            fault_at=killed_at, fault_end=killed_at,
                            notes={"lease_s": LEASE, "slot_freed_after_s": round(freed_after, 2),
                                   "most_running_per_key": most, "limit": 2})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == 4
    assert most <= 2, f"{most} of one key ran at once"
    assert freed_after <= LEASE + 1.5, f"the slots came back after {freed_after:.2f}s"


@pytest.mark.postgres
def test_a_postgresql_restart_exceeds_no_limit(
    tmp_path: Path, private_pg: PrivateCluster, private_pg_url: str, history: Path
) -> None:
    """Rate 50/s and 2 per key, PostgreSQL restarted mid-drain: no sliding second holds
    more starts than rate + burst, no key more than 2 running, nothing lost."""
    app = build(private_pg_url)
    rated, keyed = app.tasks["rated_work"], app.tasks["keyed_work"]
    jobs = app.enqueue_jobs(
        [rated.prepare(n, 0.0) for n in range(300)]
        + [keyed.using(limit_key=f"k{n % 10}").prepare(n, 0.2) for n in range(300, 500)]
    )
    harness.record_enqueues(history, [(n, j.id) for n, j in enumerate(jobs) if j.id])
    env = harness.app_env(private_pg_url, history, LEASE="3")
    fleet = [harness.start_worker(tmp_path, private_pg_url, history, "-c", "8",
                                  log_name=f"worker{i}", env=env) for i in range(2)]
    try:
        harness.wait_until(lambda: harness.count_events(history, "end") > 100, 120,
                           "the drain under way")
        fault_at = time.time()
        private_pg.restart()
        fault_end = time.time()
        harness.wait_until(harness.all_finished(app, 500), 240, "all jobs done")
    finally:
        codes = [harness.stop(proc) for proc in fleet]
    assert codes == [0, 0]
    events = harness.read_history(history)
    rated_starts = sorted(e.at for e in events if e.kind == "start" and e.n < 300)
    busiest, j = 0, 0
    for i, at in enumerate(rated_starts):
        while j < len(rated_starts) and rated_starts[j] < at + 1.0:
            j += 1
        busiest = max(busiest, j - i)
    keyed_events = [e for e in events if e.n >= 300]
    most = most_running_per_key(keyed_events, {n: f"k{n % 10}" for n in range(300, 500)})
    figures = harness.check(app, history, fault="limits-postgres-restart", backend="postgres",
                            fault_at=fault_at, fault_end=fault_end,
                            notes={"restart_s": round(fault_end - fault_at, 2),
                                   "busiest_second": busiest, "rate_plus_burst": 100,
                                   "most_running_per_key": most, "limit": 2})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == 500
    assert busiest <= 100, f"{busiest} starts in one second"
    assert most <= 2, f"{most} of one key ran at once"
