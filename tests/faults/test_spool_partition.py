"""Real network partitions between hosts and PostgreSQL, at the sizes issue 14 names.

Each host is a network namespace joined to this one by a veth pair; PostgreSQL
(listening on 127.0.0.1) is reached through a relay bound to the veth's host-side
address. Taking the host end of a link down partitions that host: packets vanish,
connections neither fail nor answer. Needs root (network namespaces); CI runs as root.

Two tests, each one window, with every host's work running at once:

- three application hosts cut off together for 15 s: one enqueues 5,000 jobs in
  `spool` mode (no caller error; all land exactly once within 10 s of the link
  coming back), one enqueues in `raise` mode (every call refused within 1.5 s with
  "not stored", none of them stored), one spools 1,000 jobs and is SIGKILLed with
  them on disk (`conveyor spool flush` after the heal delivers each exactly once);
- three worker hosts draining one queue, one cut off for longer than its lease:
  the others rescue its jobs, its late completions are refused, nothing is lost,
  and it takes work again once its link is back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI, _pg_truncate
from tests.faults import harness
from tests.faults.faultapp import build
from tests.faults.harness import Figures
from tests.faults.proxy import Proxy

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.postgres]

PARTITION_SECONDS = 15.0
SPOOL_JOBS = 5_000
KILLED_JOBS = 1_000
HEAL_BOUND = 10.0
"""Seconds after the link is back by which every spooled job must be stored."""
REPO = Path(__file__).resolve().parents[2]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Relay(Proxy):
    """The fault proxy, listening on a given address (the veth's) instead of loopback."""

    def __init__(self, listen_host: str, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server((listen_host, 0))
        self.port = self._listener.getsockname()[1]
        self.state = "open"
        self._lock = threading.Lock()
        self._pairs = []
        self._held = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()


@dataclass
class Host:
    """A network namespace with a veth link to this one, and a relay to PostgreSQL."""

    ns: str
    link: str
    addr: str
    relay: Relay

    def url(self, database_url: str) -> str:
        return database_url.replace("127.0.0.1:5432", f"{self.addr}:{self.relay.port}")

    def run(self, args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *args], text=True,
                                **kwargs)  # type: ignore[call-overload]

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def heal(self) -> None:
        _ip("link", "set", self.link, "up")


@pytest.fixture
def hosts() -> Iterator[Callable[[int], list[Host]]]:
    """A factory of fresh veth-joined namespaces; all removed at the end."""
    if os.geteuid() != 0:
        reason = "network namespaces need root"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    made: list[Host] = []

    def make(count: int) -> list[Host]:
        for _ in range(count):
            tag = uuid.uuid4().hex[:6]
            ns, host_link, ns_link = f"cvy{tag}", f"cvh{tag}", f"cvn{tag}"
            second, third = int(tag[:2], 16) % 200 + 20, int(tag[2:4], 16) % 60 * 4
            host_addr, ns_addr = f"10.{second}.{third}.1", f"10.{second}.{third}.2"
            _ip("netns", "add", ns)
            _ip("link", "add", host_link, "type", "veth", "peer", "name", ns_link)
            made.append(Host(ns, host_link, host_addr, None))  # type: ignore[arg-type]
            _ip("link", "set", ns_link, "netns", ns)
            _ip("addr", "add", f"{host_addr}/30", "dev", host_link)
            _ip("link", "set", host_link, "up")
            _ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_addr}/30", "dev", ns_link)
            _ip("netns", "exec", ns, "ip", "link", "set", ns_link, "up")
            _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
            made[-1].relay = Relay(host_addr, 5432)
        return made[-count:]

    try:
        yield make
    finally:
        for host in made:
            if host.relay is not None:
                host.relay.close()
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("link", "del", host.link)
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("netns", "del", host.ns)


# -- three application hosts, one 15 s partition ----------------------------------------
APP_MODULE = textwrap.dedent("""
    import os
    from conveyor import Conveyor

    app = Conveyor(os.environ["APP_URL"], when_unreachable=os.environ["APP_MODE"],
                   unreachable_timeout=float(os.environ["APP_DEADLINE"]), connect_timeout=1.0,
                   spool_path=os.environ.get("APP_SPOOL") or None)

    @app.task(name=os.environ["APP_TASK"])
    def add(x: int) -> int:
        return x

    @app.task(name="warm-up")
    def warm(x: int) -> int:
        return x

    def warm_up():
        # Connected before the partition (a cold start on a busy machine may take
        # longer than one deadline).
        import time
        for _ in range(60):
            try:
                job = warm.using(when_unreachable="raise").enqueue(-1)
                if job.id is not None:
                    return
            except Exception:
                time.sleep(0.2)
        raise SystemExit("cannot reach the database before the partition")
""")

SPOOL_CHILD = textwrap.dedent("""
    import json, sys, threading, time
    from hostapp import add, app, warm_up
    n, threads, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    warm_up()
    print("ready", flush=True)
    sys.stdin.readline()  # the link is down now
    ids, spooled, errors, slowest = [], 0, [], 0.0
    lock = threading.Lock()

    def enqueue(share):
        global spooled, slowest
        for i in share:
            started = time.monotonic()
            try:
                job = add.enqueue(i)
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            took = time.monotonic() - started
            with lock:
                ids.append(job.client_id)
                spooled += job.spooled
                slowest = max(slowest, took)

    started = time.time()
    workers = [threading.Thread(target=enqueue, args=(range(k, n, threads),))
               for k in range(threads)]
    for w in workers: w.start()
    for w in workers: w.join()
    finished = time.time()
    print("enqueued", flush=True)
    if sys.argv[4] == "kill":
        time.sleep(3600)  # SIGKILLed here, its jobs on disk
    deadline = time.monotonic() + 90
    while (app.spool_status() or None) and app.spool_status().depth and \\
            time.monotonic() < deadline:
        time.sleep(0.05)
    left = app.spool_status().depth if app.spool_status() else 0
    app.close()
    json.dump({"ids": ids, "spooled": spooled, "errors": errors, "slowest": slowest,
               "left": left, "started": started, "finished": finished}, open(out, "w"))
""")

RAISE_CHILD = textwrap.dedent("""
    import json, sys, time
    from conveyor import EnqueueOutcomeUnknown, NotStoredError
    from hostapp import add, app, warm_up
    out, stop_file = sys.argv[1], sys.argv[2]
    import os
    warm_up()
    print("ready", flush=True)
    calls, i = [], 0
    while not os.path.exists(stop_file):
        started = time.time()
        try:
            job = add.enqueue(i)
            calls.append(["stored", job.client_id, started, time.time() - started])
        except NotStoredError as exc:
            kind = "not-stored-after-look-up" if "looked up" in str(exc) else "not-stored"
            calls.append([kind, exc.client_ids[0], started, time.time() - started])
        except EnqueueOutcomeUnknown as exc:
            calls.append(["unknown", exc.client_ids[0], started, time.time() - started,
                          repr(exc.__cause__)])
        except Exception as exc:
            calls.append(["error", repr(exc), started, time.time() - started])
        i += 1
        time.sleep(0.02)
    app.close()
    json.dump(calls, open(out, "w"))
""")


def _stored(url: str, task: str) -> list[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT client_id FROM conveyor_jobs WHERE task = %s AND client_id IS NOT NULL",
            (task,),
        )]


def test_app_hosts_cut_off_for_15s_spool_delivers_raise_refuses_killed_spool_flushes(
    hosts: Callable[[int], list[Host]], pg_database: str, tmp_path: Path
) -> None:
    _pg_truncate(pg_database)
    spool_host, raise_host, kill_host = hosts(3)
    (tmp_path / "hostapp.py").write_text(APP_MODULE)
    for name, code in (("spool_child.py", SPOOL_CHILD), ("raise_child.py", RAISE_CHILD)):
        (tmp_path / name).write_text(code)

    def env(host: Host, mode: str, task: str, deadline: float, spool: str = "") -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
                "APP_URL": host.url(pg_database), "APP_MODE": mode, "APP_TASK": task,
                "APP_DEADLINE": str(deadline), "APP_SPOOL": spool}

    stop_file = tmp_path / "stop-raising"
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    spooler = spool_host.run(
        [sys.executable, str(tmp_path / "spool_child.py"), str(SPOOL_JOBS), "4",
         str(tmp_path / "spool.json"), "wait"],
        env=env(spool_host, "spool", "spooled", 0.5, str(tmp_path / "spool-s")), **pipes)
    raiser = raise_host.run(
        [sys.executable, str(tmp_path / "raise_child.py"), str(tmp_path / "raise.json"),
         str(stop_file)],
        env=env(raise_host, "raise", "raised", 1.0), **pipes)
    killed_env = env(kill_host, "spool", "killed", 0.5, str(tmp_path / "spool-k"))
    killed = kill_host.run(
        [sys.executable, str(tmp_path / "spool_child.py"), str(KILLED_JOBS), "2",
         str(tmp_path / "killed.json"), "kill"], env=killed_env, **pipes)
    children = [spooler, raiser, killed]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for host in (spool_host, raise_host, kill_host):
            host.cut()  # the partition: all three hosts at once
        cut_at = time.time()
        for child in (spooler, killed):
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        assert killed.stdout is not None
        assert killed.stdout.readline().strip() == "enqueued"
        killed.send_signal(signal.SIGKILL)  # 1,000 acknowledged jobs in its spool
        killed.wait(10)
        killed_at = time.time() - cut_at
        time.sleep(max(0.0, cut_at + PARTITION_SECONDS - time.time()))
        for host in (spool_host, raise_host, kill_host):
            host.heal()
        healed = time.time()
        deadline = time.monotonic() + 60
        landed_at = None
        while time.monotonic() < deadline:
            if len(_stored(pg_database, "spooled")) >= SPOOL_JOBS:
                landed_at = time.time()
                break
            time.sleep(0.1)
        stop_file.touch()
        # The killed host's restart: the CLI forwards what its spool holds.
        flush = kill_host.run(
            [sys.executable, "-m", "conveyor", "spool", "flush", "hostapp:app"],
            env=killed_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        flush_out, _ = flush.communicate(timeout=60)
        spooler.wait(timeout=120)
        raiser.wait(timeout=60)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    spooled = json.loads((tmp_path / "spool.json").read_text())
    stored = _stored(pg_database, "spooled")
    enqueued_s = round(spooled["finished"] - spooled["started"], 1)
    Figures(
        "partition-spool", "postgres", jobs=SPOOL_JOBS,
        lost=len(set(spooled["ids"]) - set(stored)),
        extra_executions=len(stored) - len(set(stored)),
        recovery_s=None if landed_at is None else round(landed_at - healed, 2),
        notes={"partition_s": PARTITION_SECONDS, "spooled": spooled["spooled"],
               "caller_errors": len(spooled["errors"]),
               "slowest_call_s": round(spooled["slowest"], 2),
               "enqueue_s": enqueued_s},
    ).save()
    assert spooled["errors"] == []  # no caller saw an error
    assert spooled["started"] < healed and spooled["spooled"] > SPOOL_JOBS // 2
    assert spooled["slowest"] < 0.5 + 1.5  # no call waited much past the deadline
    assert landed_at is not None, f"{len(stored)} of {SPOOL_JOBS} stored a minute after"
    assert landed_at - healed < HEAL_BOUND, f"landed {landed_at - healed:.1f}s after heal"
    assert spooled["left"] == 0
    assert len(stored) == SPOOL_JOBS == len(set(stored))  # exactly once
    assert sorted(stored) == sorted(spooled["ids"])

    # The host SIGKILLed with its spool full: each acknowledged job delivered once.
    assert flush.returncode == 0, flush_out
    stored_killed = _stored(pg_database, "killed")
    Figures(
        "partition-killed-spool", "postgres", jobs=KILLED_JOBS,
        lost=KILLED_JOBS - len(set(stored_killed)),
        extra_executions=len(stored_killed) - len(set(stored_killed)),
        notes={"killed_after_s": round(killed_at, 1), "flush": flush_out.strip()[-60:]},
    ).save()
    assert len(stored_killed) == KILLED_JOBS == len(set(stored_killed))

    # raise mode: every call during the partition refused in time, none of them stored.
    calls = json.loads((tmp_path / "raise.json").read_text())
    stored_raised = set(_stored(pg_database, "raised"))
    by_outcome: dict[str, list[list[object]]] = {}
    for call in calls:
        by_outcome.setdefault(str(call[0]), []).append(call)
    refused = by_outcome.get("not-stored", []) + by_outcome.get("not-stored-after-look-up", [])
    during = [c for c in calls if cut_at + 0.1 < float(str(c[2])) < healed - 1.5]
    Figures(
        "partition-raise", "postgres", jobs=len(by_outcome.get("stored", [])),
        lost=len({c[1] for c in by_outcome.get("stored", [])} - stored_raised),
        notes={"partition_s": PARTITION_SECONDS, "calls_during": len(during),
               "refused": len(refused),
               "refused_but_stored": len({c[1] for c in refused} & stored_raised),
               "unknown": len(by_outcome.get("unknown", [])),
               "slowest_refusal_s": round(max(
                   (float(str(c[3])) for c in refused), default=0.0), 2)},
    ).save()
    assert "error" not in by_outcome, by_outcome["error"][:3]
    assert len(during) >= 10  # the partition was felt, call after call
    assert all(c[0] == "not-stored" and float(str(c[3])) < 1.5 for c in during), [
        c for c in during if c[0] != "not-stored" or float(str(c[3])) >= 1.5][:3]
    assert not {c[1] for c in refused} & stored_raised  # "not stored" means not stored
    assert {c[1] for c in by_outcome["stored"]} <= stored_raised
    # an INSERT in flight at the very moment of the cut is the one ambiguous case:
    # named by client id, stored at most once
    assert len(by_outcome.get("unknown", [])) <= 1
    assert stored_raised <= {c[1] for c in by_outcome["stored"] + by_outcome.get("unknown", [])}


# -- three worker hosts, one cut off past its lease -------------------------------------
LEASE = 2.0
WORKER_CUT_SECONDS = 3 * LEASE


def test_a_worker_host_cut_off_past_its_lease_is_rescued_fenced_and_resumes(
    hosts: Callable[[int], list[Host]], pg_database: str, tmp_path: Path
) -> None:
    _pg_truncate(pg_database)
    history = tmp_path / "history"
    app = build(pg_database, lease=LEASE)
    cut_host, *others = hosts(3)
    first = harness.enqueue_many(app, history, "work", [(0.1,)] * 400)
    workers = {}
    for name, host in (("cut", cut_host), ("b", others[0]), ("c", others[1])):
        url = host.url(pg_database)
        log = (tmp_path / f"{name}.log").open("ab")
        workers[name] = host.run(
            [sys.executable, "-m", "conveyor", "worker", harness.APP_PATH, "-c", "4",
             "--poll-interval", "0.05"],
            cwd=REPO, env=harness.app_env(url, history, LEASE=str(LEASE)),
            stdout=log, stderr=subprocess.STDOUT)
    cut_pid = workers["cut"].pid  # `ip netns exec` execs the worker: the same process

    def started_by_cut(after: float = 0.0) -> int:
        return sum(1 for e in harness.read_history(history)
                   if e.kind == "start" and e.pid == cut_pid and e.at > after)

    try:
        harness.wait_until(lambda: started_by_cut() >= 8, 60,
                           "the host to be cut off to run jobs")
        cut_host.cut()
        fault_at = time.time()
        time.sleep(WORKER_CUT_SECONDS)
        cut_host.heal()
        fault_end = time.time()
        more = harness.enqueue_many(app, history, "work", [(0.1,)] * 80, first=len(first))
        harness.wait_until(lambda: started_by_cut(fault_end) > 0, 60,
                           "the host to take work again once its link is back")
        harness.wait_until(harness.all_finished(app, len(first) + len(more)), 90,
                           "every job to finish")
        harness.wait_until(
            lambda: "the lease had moved on" in (tmp_path / "cut.log").read_text(), 30,
            "the cut-off host's late completions to be refused")
    finally:
        codes = [harness.stop(w) for w in workers.values()]
    assert codes == [0, 0, 0]
    figures = harness.check(app, history, fault="partition-worker-host", backend="postgres",
                            fault_at=fault_at, fault_end=fault_end,
                            notes={"hosts": 3, "lease_s": LEASE,
                                   "cut_s": round(fault_end - fault_at, 1),
                                   "started_after_heal_by_cut_host": started_by_cut(fault_end)})
    app.close()
    figures.show()
    figures.save()
    figures.assert_sound()
    assert figures.succeeded == len(first) + len(more)
    assert figures.broken_leases >= 1  # its jobs were rescued by the others
