"""Shared circuit breakers and retry budgets with a real fleet: 4 worker processes x 8
slots calling a real local TCP dependency that the test stops and starts again.

Counted from the history the tasks and the workers' event observers write (see
flowapp.py): what started while the breaker was open, how many probes each
half-open period let through, how long recovery took, and how many retries ran
against each window of the retry budget.
"""

from __future__ import annotations

import signal
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState
from tests.faults import harness
from tests.faults.flowapp import build
from tests.faults.pgcluster import PrivateCluster

pytestmark = [pytest.mark.faults, pytest.mark.slow]

WORKERS = 4
SLOTS = 8
COOLDOWN = 1.0
IN_FLIGHT = 0.25
"""Seconds after the breaker opened in which a start may be one admitted before it."""
APP = "tests.faults.flowapp:app"


class _Pong(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        self.wfile.write(b"pong\n")


class Dependency:
    """A real TCP service on a fixed local port: stop() refuses connections until start()."""

    def __init__(self) -> None:
        self.server: socketserver.ThreadingTCPServer | None = None
        self.port = 0
        self.start()

    def start(self) -> None:
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), _Pong)
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Line:
    at: float
    what: str
    n: int
    pid: int


def read(history: Path) -> list[Line]:
    lines: list[Line] = []
    if not history.exists():
        return lines
    for text in history.read_text().splitlines():
        at, what, n, pid = text.split()
        lines.append(Line(float(at), what, int(n), int(pid)))
    return sorted(lines, key=lambda line: line.at)


def start_fleet(
    tmp: Path, env: dict[str, str], count: int = WORKERS
) -> list[subprocess.Popen[bytes]]:
    fleet = []
    for i in range(count):
        log = (tmp / f"worker{i}.log").open("ab")
        fleet.append(subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", APP, "--poll-interval", "0.05",
             "-c", str(SLOTS)],
            cwd=harness.REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        ))
    return fleet


def stop_fleet(fleet: list[subprocess.Popen[bytes]]) -> list[int]:
    for proc in fleet:  # all at once, then wait for each
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in fleet:
        try:
            codes.append(proc.wait(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


def feed(app: Conveyor, task: str, rate: float, seconds: float, first: int) -> list[int]:
    """Enqueue `rate` jobs a second for `seconds` (in batches every 0.1 s); their ids."""
    ids: list[int] = []
    started = time.monotonic()
    n = first
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) + 1 - (n - first)
        if due > 0:
            ids += [j.id for j in app.tasks[task].enqueue_many([(n + i,) for i in range(due)])]
            n += due
        time.sleep(0.1 - (time.monotonic() - started) % 0.1)
    return ids


def budget_counts(url: str, task: str) -> dict[int, tuple[int, int]]:
    """The retry budget's stored counts of `task`: second -> (first attempts, retries)."""
    query = ("SELECT second, first_attempts, retries FROM conveyor_retry_budget "
             "WHERE task = '" + task + "'")
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = db.execute(query).fetchall()
    else:
        import psycopg

        with psycopg.connect(url) as db:
            rows = db.execute(query).fetchall()
    return {int(s): (int(f), int(r)) for s, f, r in rows}


def env_for(url: str, history: Path, **extra: str) -> dict[str, str]:
    return harness.app_env(url, history, COOLDOWN=str(COOLDOWN), **extra)


def everything_succeeded(app: Conveyor, ids: list[int]) -> bool:
    counts = harness.states(app)
    return counts["succeeded"] >= len(ids)


def breaker_periods(lines: list[Line]) -> list[tuple[str, float, float]]:
    """(state, from, to) of every open and half-open period, from the published events."""
    changes = [(line.at, line.what) for line in lines if line.what.startswith("breaker_")]
    periods = []
    for (at, what), (until, _) in zip(changes, [*changes[1:], (float("inf"), "")], strict=True):
        state = {"breaker_opened": "open", "breaker_half_open": "half-open"}.get(what)
        if state:
            periods.append((state, at, until))
    return periods


def test_a_shared_breaker_lets_one_probe_per_cooldown_through_for_the_whole_fleet(
    fault_backend: tuple[str, str], tmp_path: Path, history: Path
) -> None:
    name, url = fault_backend
    dependency = Dependency()
    app = build(url)
    fleet = start_fleet(tmp_path, env_for(url, history, DEP_PORT=str(dependency.port)))
    try:
        warm = feed(app, "call", 50, 1.0, first=0)
        harness.wait_until(lambda: everything_succeeded(app, warm), 60, "the warm-up jobs")
        dependency.stop()
        down_at = time.time()
        ids = warm + feed(app, "call", 50, 3 * COOLDOWN + 1.5, first=len(warm))
        dependency.start()
        up_at = time.time()
        harness.wait_until(lambda: everything_succeeded(app, ids), 60, "every job succeeded")
    finally:
        dependency.stop()
        codes = stop_fleet(fleet)
    assert codes == [0] * WORKERS
    lines = read(history)
    starts = [line for line in lines if line.what == "start"]
    periods = breaker_periods(lines)
    events = Counter(line.what for line in lines if line.what.startswith("breaker_"))
    closed_at = max(line.at for line in lines if line.what == "breaker_closed")
    # An attempt a worker admitted (its check read "closed") just before another worker's
    # failure opened the breaker still starts: that is the race between a check and a
    # write elsewhere, bounded by the fleet's slots and by the time from a check to its
    # start (milliseconds: near the threshold every worker checks before each attempt).
    # Anything later, or more, is an attempt the open breaker let through.
    in_open = [s for s in starts for state, a, b in periods if state == "open" and a < s.at < b]
    in_flight = [s for s in in_open
                 if any(state == "open" and a < s.at <= a + IN_FLIGHT for state, a, _ in periods)]
    late = [s for s in in_open if s not in in_flight]
    probes = [
        sum(1 for s in starts if a <= s.at < b)
        for state, a, b in periods if state == "half-open"
    ]
    failed_before_open = sum(
        1 for line in lines
        if line.what == "fail" and line.at < min(a for _, a, _ in periods)
    )
    figures = {
        "backend": name, "jobs": len(ids), "events": dict(events),
        "attempts_while_open": len(late), "admitted_before_it_opened": len(in_flight),
        "half_open_periods": len(probes),
        "attempts_per_half_open_period": probes, "failures_before_opening": failed_before_open,
        "recovery_s": round(closed_at - up_at, 3), "down_s": round(up_at - down_at, 2),
    }
    print(figures)
    # Opened once by the fleet's failures (not once per process), then a probe per cooldown.
    assert events["breaker_opened"] == events["breaker_half_open"] >= 2
    assert events["breaker_closed"] == 1
    # While open nothing starts (but what was admitted as it opened); each half-open
    # period lets exactly one probe through.
    assert late == [], late
    assert len(in_flight) <= WORKERS * SLOTS, in_flight
    assert probes and all(p == 1 for p in probes), probes
    # The fleet's counts opened it: as soon as the failures of all processes together
    # reached half the attempts in the window (the warm-up's successes are in it), give
    # or take the attempts in flight; never once per process.
    succeeded_before = sum(1 for line in lines if line.what == "ok" and line.at < down_at)
    assert failed_before_open <= max(10 * 0.5, succeeded_before) + WORKERS * SLOTS
    # Recovery: within the cooldown plus one probe (the probe is a local round trip;
    # 0.5 s covers the deferred job's fetch at the end of the cooldown).
    assert closed_at - up_at <= COOLDOWN + 0.5
    records = harness.job_records(app)
    assert all(r.state is JobState.SUCCEEDED for r in records)
    # Deferred while open: no attempt spent. Each job's count is the times it started.
    started = Counter(s.n for s in starts)
    assert {r.id: r.attempt for r in records} == {
        job_id: started[n] for n, job_id in enumerate(ids)
    }
    app.close()


def test_retries_past_the_budget_wait_and_no_job_goes_dead_because_of_it(
    fault_backend: tuple[str, str], tmp_path: Path, history: Path
) -> None:
    name, url = fault_backend
    failing, window, floor, ratio, rate = 8.0, 2.0, 4, 0.2, 50
    app = build(url)
    env = env_for(url, history, DEP_PORT="1", BUDGET_WINDOW=str(window),
                  BUDGET_FLOOR=str(floor), FAIL_UNTIL=str(time.time() + 3600))
    fleet = start_fleet(tmp_path, env)
    try:
        harness.wait_until(lambda: len(app.backend.worker_list(alive_within=5)) == WORKERS,
                           60, "the workers registered")
        ids = feed(app, "flaky", rate, failing, first=0)
    finally:
        codes = stop_fleet(fleet)
    assert codes == [0] * WORKERS
    lines = read(history)
    starts = [line for line in lines if line.what == "start"]
    by_job: dict[int, list[float]] = defaultdict(list)
    for s in starts:
        by_job[s.n].append(s.at)
    firsts = sorted(times[0] for times in by_job.values())
    retries = sorted(t for times in by_job.values() for t in times[1:])
    deferred = sum(1 for line in lines if line.what == "retry_deferred")
    counted = budget_counts(url, "flaky")
    figures = {
        "backend": name, "jobs": len(ids), "first_attempts": len(firsts),
        "retries": len(retries), "deferred_by_budget": deferred,
        "retry_ratio": round(len(retries) / len(firsts), 3),
        "counted_first_attempts": sum(f for f, _ in counted.values()),
        "counted_retries": sum(r for _, r in counted.values()),
    }
    print(figures)
    assert deferred > 0, figures  # the budget was reached, and said so
    # The database's windows (the last `window` whole seconds, as the budget reads them),
    # each as of the last retry taken in it: in none did the fleet take more retries
    # than ratio x first attempts + floor.
    for second in (s for s, (_, taken) in counted.items() if taken):
        within = [counted.get(s, (0, 0)) for s in range(second - int(window) + 1, second + 1)]
        assert sum(r for _, r in within) <= ratio * sum(f for f, _ in within) + floor, (
            second, sorted(counted.items()))
    # Every retry that ran took a unit there, and every first attempt was counted.
    assert len(retries) <= figures["counted_retries"]
    assert figures["counted_first_attempts"] == len(firsts)
    # Over the whole run, by the tasks' own start times.
    assert len(retries) <= ratio * len(firsts) + floor * (failing / window + 2)
    # A deferral spends no attempt: every job's attempt count is the times it started,
    # and only jobs that really failed max_attempts (3) times are dead.
    records = {r.id: r for r in harness.job_records(app)}
    assert len(records) == len(ids)
    for n, job_id in enumerate(ids):
        record = records[job_id]
        assert record.attempt == len(by_job.get(n, [])), (record, by_job.get(n))
        if record.state is JobState.DEAD:
            assert len(record.errors) == 3 and len(by_job[n]) == 3
    app.close()


def wait_for_line(history: Path, what: str, after: float, timeout: float = 60) -> Line:
    found: list[Line] = []

    def seen() -> bool:
        found[:] = [line for line in read(history) if line.what == what and line.at > after]
        return bool(found)

    harness.wait_until(seen, timeout, f"a {what!r} line in the history")
    return found[0]


def test_a_worker_killed_while_holding_the_probe_delays_recovery_by_at_most_its_lease(
    fault_backend: tuple[str, str], tmp_path: Path, history: Path
) -> None:
    name, url = fault_backend
    lease = 2.0
    dependency = Dependency()
    dependency.stop()  # down from the start
    app = build(url)
    hang = Path(str(history) + ".hang")
    fleet = start_fleet(tmp_path, env_for(url, history, DEP_PORT=str(dependency.port),
                                          LEASE=str(lease)), count=2)
    try:
        ids = [j.id for j in app.tasks["call"].enqueue_many([(n,) for n in range(60)])]
        opened = wait_for_line(history, "breaker_opened", 0)
        hang.touch()  # the next attempt, the probe, hangs until killed
        probe = wait_for_line(history, "start", opened.at)
        prober = next(p for p in fleet if p.pid == probe.pid)
        prober.kill()
        killed_at = time.time()
        hang.unlink()
        dependency.start()
        closed = wait_for_line(history, "breaker_closed", killed_at)
        harness.wait_until(lambda: everything_succeeded(app, ids), 60, "every job succeeded")
    finally:
        dependency.stop()
        codes = stop_fleet([p for p in fleet if p.returncode is None and p.poll() is None])
    assert codes == [0]
    lines = read(history)
    between = [s for s in lines if s.what == "start" and probe.at < s.at < closed.at]
    figures = {"backend": name, "probe_claimed_to_closed_s": round(closed.at - probe.at, 3),
               "starts_between": len(between)}
    print(figures)
    # Nobody else probed while the dead worker's claim was live; then one probe closed it.
    assert len(between) == 1 and between[0].pid != probe.pid
    assert between[0].at - probe.at >= lease - 0.2
    assert closed.at - probe.at <= lease + COOLDOWN + 1.0
    app.close()


@pytest.mark.postgres
def test_the_breaker_stays_open_across_a_postgresql_restart_and_recovers_after(
    tmp_path: Path, private_pg: PrivateCluster, private_pg_url: str, history: Path
) -> None:
    dependency = Dependency()
    dependency.stop()
    app = build(private_pg_url)
    fleet = start_fleet(tmp_path, env_for(private_pg_url, history,
                                          DEP_PORT=str(dependency.port)), count=2)
    try:
        ids = [j.id for j in app.tasks["call"].enqueue_many([(n,) for n in range(60)])]
        opened = wait_for_line(history, "breaker_opened", 0)
        private_pg.restart()
        restarted_at = time.time()
        wait_for_line(history, "breaker_half_open", restarted_at)  # a probe after the restart
        dependency.start()
        up_at = time.time()
        closed = wait_for_line(history, "breaker_closed", up_at)
        harness.wait_until(lambda: everything_succeeded(app, ids), 60, "every job succeeded")
    finally:
        dependency.stop()
        codes = stop_fleet(fleet)
    assert codes == [0, 0]
    lines = read(history)
    periods = breaker_periods(lines)
    starts = [line for line in lines if line.what == "start"]
    in_open = [s for s in starts for state, a, b in periods if state == "open" and a < s.at < b]
    probes = [sum(1 for s in starts if a <= s.at < b)
              for state, a, b in periods if state == "half-open"]
    print({"opened_at": opened.at, "restart_s": round(restarted_at - opened.at, 2),
           "probes": probes, "recovery_s": round(closed.at - up_at, 3)})
    assert in_open == [] and all(p == 1 for p in probes), probes
    assert closed.at - up_at <= COOLDOWN + 0.5
    app.close()
