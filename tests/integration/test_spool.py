"""Enqueue when the database does not answer: `raise` (certainly not stored, within the
deadline) and `spool` (kept on local disk, forwarded exactly once), on both backends.

"Unreachable": on SQLite another connection holds the write lock longer than the
deadline; on PostgreSQL a TCP proxy (tests/faults/proxy.py) cuts the connections and
accepts new ones without ever answering.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    ConfigurationError,
    Conveyor,
    EnqueueOutcomeUnknown,
    InvalidOptionError,
    NotStoredError,
    SpoolFullError,
)
from conveyor.events import EventName
from conveyor.spool import SPOOL_FILE
from tests.faults.proxy import Proxy

DEADLINE = 0.3


class Outage:
    """Makes the test's database unreachable for the app, and brings it back."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.proxy: Proxy | None = None
        self._holder: sqlite3.Connection | None = None
        if db_url.startswith("postgresql"):
            self.proxy = InsertKillingProxy(5432)
            self.app_url = self.proxy.url(db_url)
        else:
            self.app_url = db_url

    @property
    def path(self) -> str:
        return self.db_url.removeprefix("sqlite:///")

    def start(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
        else:
            self._holder = sqlite3.connect(self.path, isolation_level=None)
            self._holder.execute("BEGIN IMMEDIATE")  # the write lock, held until end()

    def end(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        elif self._holder is not None:
            self._holder.execute("ROLLBACK")
            self._holder.close()
            self._holder = None

    def close(self) -> None:
        self.end()
        if self.proxy is not None:
            self.proxy.close()

    def rows(self) -> list[tuple[int, str | None, str | None]]:
        """(id, client_id, idempotency_key) of every job, read directly."""
        sql = "SELECT id, client_id, idempotency_key FROM conveyor_jobs ORDER BY id"
        if self.proxy is None:
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                return [tuple(r) for r in conn.execute(sql)]  # type: ignore[misc]
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(sql)]  # type: ignore[misc]


class InsertKillingProxy(Proxy):
    """A proxy that can reset a connection that just sent an INSERT of jobs: at once
    ("sent": the server never commits it) or when the server's answer to it comes
    back ("committed": the server stored the jobs, the client never hears so)."""

    kill_next_insert: str | None = None

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        armed = False
        try:
            while not self._closed.is_set():
                ready, _, _ = select_ready(list(peers))
                if self.state == "frozen":
                    continue
                if self.state != "open":
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream and armed and b"Z\0\0\0\x05" in data:
                        self._reset(peers)  # ReadyForQuery: committed; the answer is dropped
                        return
                    if sock is client and self.kill_next_insert \
                            and b"INSERT INTO conveyor_jobs" in data:
                        when, self.kill_next_insert = self.kill_next_insert, None
                        # "sent": the client wrote the INSERT and the link died with it in
                        # flight (a statement and its Sync travel in one packet, so
                        # forwarding it first would let the server commit it).
                        if when == "sent":
                            self._reset(peers)
                            return
                        if when == "sent-then-unreachable":
                            self.cut()  # this connection reset, new ones never answered
                            return
                        armed = True
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in peers:
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock, contextlib.suppress(ValueError):
                self._pairs.remove((client, upstream))

    @staticmethod
    def _reset(peers: dict[socket.socket, socket.socket]) -> None:
        for s in peers:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                s.close()


def select_ready(socks: list[socket.socket]) -> tuple[list[socket.socket], Any, Any]:
    import select

    return select.select(socks, [], [], 0.1)


@pytest.fixture
def outage(backend_url: str) -> Iterator[Outage]:
    o = Outage(backend_url)
    try:
        yield o
    finally:
        o.close()


@pytest.fixture
def spool_app(outage: Outage, tmp_path: Path) -> Iterator[Callable[..., Conveyor]]:
    apps: list[Conveyor] = []

    def build(**settings: Any) -> Conveyor:
        settings.setdefault("unreachable_timeout", DEADLINE)
        settings.setdefault("spool_path", str(tmp_path / "spool"))
        settings.setdefault("connect_timeout", 1.0)
        app = Conveyor(outage.app_url, **settings)

        @app.task()
        def add(x: int) -> int:
            return x

        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close(flush_timeout=0.1)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


# -- raise ---------------------------------------------------------------------------
def test_raise_fails_within_the_deadline_and_stores_nothing(
    spool_app: Callable[..., Conveyor], outage: Outage
) -> None:
    app = spool_app(when_unreachable="raise", unreachable_timeout=1.0)
    add = app.get_task("add")
    warm = add.enqueue(0)  # connected and migrated
    assert warm.id is not None and warm.client_id is not None and not warm.spooled
    outage.start()
    for enqueue in (lambda: add.enqueue(1), lambda: add.enqueue_many([(2,), (3,)])):
        started = time.monotonic()
        with pytest.raises(NotStoredError, match="NOT stored"):
            enqueue()
        assert time.monotonic() - started < 1.5
    outage.end()
    time.sleep(0.5)  # a late write, were there one, would land now
    assert [r[0] for r in outage.rows()] == [warm.id]
    assert add.enqueue(4).id is not None  # back to normal once it answers


ONLY_POSTGRES = pytest.mark.parametrize("backend_url", ["postgres"], indirect=True)
"""An INSERT cut mid-way needs a network between client and database (SQLite is local)."""


@ONLY_POSTGRES
@pytest.mark.parametrize("cut", ["sent", "committed"])
def test_raise_after_the_insert_was_sent_tells_stored_from_not_stored(
    spool_app: Callable[..., Conveyor], outage: Outage, cut: str
) -> None:
    app = spool_app(when_unreachable="raise", unreachable_timeout=1.0)
    add = app.get_task("add")
    add.enqueue(0)
    assert isinstance(outage.proxy, InsertKillingProxy)
    outage.proxy.kill_next_insert = cut
    started = time.monotonic()
    if cut == "sent":  # never committed: looked up by client id, certainly not stored
        with pytest.raises(NotStoredError, match="looked up by client id"):
            add.enqueue(1)
        assert len(outage.rows()) == 1
    else:  # committed, the answer lost: found by client id, no error
        job = add.enqueue(1)
        assert job.id is not None and not job.spooled
        assert outage.rows()[1] == (job.id, job.client_id, None)
        assert len(outage.rows()) == 2
    assert time.monotonic() - started < 2.5
    assert outage.proxy.kill_next_insert is None  # the cut happened


@ONLY_POSTGRES
def test_raise_on_a_frozen_connection_fails_within_the_deadline(
    spool_app: Callable[..., Conveyor], outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection stays up but nothing gets through (a partition) while it sat idle:
    the ping hangs, the INSERT is never sent; once the network is back the late ping
    changes nothing."""
    from conveyor.backends.postgres import backend

    monkeypatch.setattr(backend, "FRESH_SECONDS", 0.0)  # idle: pinged before the INSERT
    assert outage.proxy is not None
    app = spool_app(when_unreachable="raise", unreachable_timeout=1.0)
    add = app.get_task("add")
    add.enqueue(0)
    outage.proxy.freeze()
    started = time.monotonic()
    with pytest.raises(NotStoredError):
        add.enqueue(1)
    assert time.monotonic() - started < 1.5
    outage.proxy.restore()
    time.sleep(0.5)  # the stuck ping completes now; its INSERT must not follow
    assert len(outage.rows()) == 1
    assert add.enqueue(2).id is not None
    assert len(outage.rows()) == 2


@ONLY_POSTGRES
def test_a_connection_frozen_just_after_it_answered_is_cut_at_the_deadline(
    spool_app: Callable[..., Conveyor], outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that just answered sends its INSERT without a ping. Frozen then, the
    INSERT hangs: the watchdog cuts the socket at the deadline; the look-up by client id
    cannot answer either (still frozen), so the caller hears "MAY have been stored"
    within two deadlines, and once the network is back the job is there at most once."""
    from conveyor.backends.postgres import backend

    monkeypatch.setattr(backend, "FRESH_SECONDS", 60.0)  # fresh: no ping
    assert outage.proxy is not None
    app = spool_app(when_unreachable="raise", unreachable_timeout=1.0)
    add = app.get_task("add")
    add.enqueue_many([(0,)])
    for _ in range(4):  # every pooled connection has answered an enqueue
        add.enqueue(0)
    outage.proxy.freeze()
    started = time.monotonic()
    with pytest.raises(EnqueueOutcomeUnknown) as caught:
        add.enqueue(1)
    assert time.monotonic() - started < 2 * 1.0 + 0.5
    outage.proxy.restore()
    time.sleep(0.5)
    stored = [r[1] for r in outage.rows()]
    assert len(stored) in (5, 6) and stored[5:] in ([], caught.value.client_ids)
    assert add.enqueue(2).id is not None  # the cut connection was replaced


@ONLY_POSTGRES
def test_raise_says_may_have_been_stored_only_when_the_look_up_cannot_answer(
    spool_app: Callable[..., Conveyor], outage: Outage
) -> None:
    assert isinstance(outage.proxy, InsertKillingProxy)
    app = spool_app(when_unreachable="raise", unreachable_timeout=1.0)
    add = app.get_task("add")
    warm = add.enqueue(0)
    outage.proxy.kill_next_insert = "sent-then-unreachable"
    started = time.monotonic()
    with pytest.raises(EnqueueOutcomeUnknown, match="MAY have been stored") as caught:
        add.enqueue(1)
    assert time.monotonic() - started < 2 * 1.0 + 0.5  # the deadline, then the look-up's
    assert len(caught.value.client_ids) == 1
    outage.end()
    # stored or not, at most once, and the client id named in the error says which
    stored = [r[1] for r in outage.rows()]
    assert stored[0] == warm.client_id and stored[1:] in ([], caught.value.client_ids)


# -- spool ---------------------------------------------------------------------------
def test_spool_returns_spooled_handles_then_delivers_each_job_once(
    spool_app: Callable[..., Conveyor], outage: Outage
) -> None:
    app = spool_app(when_unreachable="spool")
    enqueued: list[Any] = []
    app.events.subscribe(enqueued.append)
    add = app.get_task("add")
    add.enqueue(0)
    outage.start()
    handles = [add.enqueue(i) for i in range(1, 6)]
    handles += add.enqueue_many([(i,) for i in range(6, 31)])
    assert all(h.spooled and h.id is None and h.client_id for h in handles)
    assert len({h.client_id for h in handles}) == 30
    assert app.spool_status().depth == 30
    # raise for one call overrides the app's spool mode
    with pytest.raises(NotStoredError):
        add.using(when_unreachable="raise").enqueue(99)
    outage.end()  # delivered by the forwarder, without another enqueue
    wait_for(lambda: len(outage.rows()) == 31, 20, "all spooled jobs delivered")
    wait_for(lambda: app.spool_status().depth == 0, 5, "the spool emptied")
    rows = outage.rows()
    assert sorted(r[1] for r in rows[1:]) == sorted(str(h.client_id) for h in handles)
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])  # spool order
    handles[3].refresh()
    assert handles[3].id == rows[4][0] and not handles[3].spooled
    assert app.spool_status().forwarded == 30, app.spool_status()
    # `enqueued` when each job reaches the database, once
    ids = sorted(e.job_id for e in enqueued if e.name is EventName.ENQUEUED)
    assert ids == [r[0] for r in rows]


@ONLY_POSTGRES
def test_a_forward_cut_after_its_insert_does_not_duplicate(
    spool_app: Callable[..., Conveyor], outage: Outage
) -> None:
    assert isinstance(outage.proxy, InsertKillingProxy)
    app = spool_app(when_unreachable="spool")
    add = app.get_task("add")
    add.enqueue(0)
    outage.start()
    handles = add.enqueue_many([(i,) for i in range(10)])
    assert all(h.spooled for h in handles)
    outage.proxy.kill_next_insert = "committed"  # the forward commits, its answer is lost
    outage.end()
    wait_for(lambda: app.spool_status().depth == 0, 20, "the spool emptied")
    assert outage.proxy.kill_next_insert is None  # the cut happened
    rows = outage.rows()
    assert len(rows) == 11
    assert sorted(r[1] for r in rows[1:]) == sorted(str(h.client_id) for h in handles)


def test_a_full_spool_refuses_and_drops_nothing(
    spool_app: Callable[..., Conveyor], outage: Outage
) -> None:
    app = spool_app(when_unreachable="spool", spool_max_jobs=5)
    add = app.get_task("add")
    add.enqueue(0)
    outage.start()
    kept = add.enqueue_many([(i,) for i in range(5)])
    with pytest.raises(SpoolFullError, match="limit is 5"):
        add.enqueue(5)
    outage.end()
    wait_for(lambda: len(outage.rows()) == 6, 20, "the five spooled jobs delivered")
    assert sorted(r[1] for r in outage.rows()[1:]) == sorted(str(h.client_id) for h in kept)


def test_a_spool_whose_oldest_job_is_too_old_refuses(
    spool_app: Callable[..., Conveyor], outage: Outage
) -> None:
    app = spool_app(when_unreachable="spool", spool_max_age=1.0)
    add = app.get_task("add")
    add.enqueue(0)
    outage.start()
    old = add.enqueue(1)
    assert old.spooled
    time.sleep(1.1)
    with pytest.raises(SpoolFullError, match="longer than spool_max_age"):
        add.enqueue(2)
    outage.end()
    wait_for(lambda: len(outage.rows()) == 2, 20, "the old job delivered, not dropped")
    assert outage.rows()[1][1] == old.client_id


def test_idempotency_keys_keep_their_meaning_through_the_spool(
    spool_app: Callable[..., Conveyor], outage: Outage
) -> None:
    app = spool_app(when_unreachable="spool")
    add = app.get_task("add")
    first = add.using(idempotency_key="k1").enqueue(1)
    outage.start()
    again = add.using(idempotency_key="k1").enqueue(1)
    twice = [add.using(idempotency_key="k2").enqueue(2) for _ in range(2)]
    assert again.spooled and all(t.spooled for t in twice)
    outage.end()
    wait_for(lambda: app.spool_status().depth == 0, 20, "the spool emptied")
    rows = outage.rows()
    assert [r[2] for r in rows] == ["k1", "k2"]
    assert rows[0][0] == first.id and rows[1][1] == twice[0].client_id


CHILD = textwrap.dedent("""
    import json, sys
    from conveyor import Conveyor
    app = Conveyor(sys.argv[1], when_unreachable="spool", unreachable_timeout=0.3,
                   spool_path=sys.argv[2], connect_timeout=1.0)

    @app.task()
    def add(x: int) -> int:
        return x

    start = 0
    while True:  # until killed
        jobs = add.enqueue_many([(i,) for i in range(start, start + 50)])
        assert all(j.spooled for j in jobs), jobs
        print(json.dumps([j.client_id for j in jobs]), flush=True)  # acknowledged
        start += 50
""")


def test_sigkilled_while_spooling_then_restarted_delivers_each_acknowledged_job_once(
    spool_app: Callable[..., Conveyor], outage: Outage, tmp_path: Path
) -> None:
    import json

    app = spool_app(when_unreachable="spool")
    app.get_task("add").enqueue(-1)  # schema ready
    app.close()
    outage.start()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, outage.app_url, str(tmp_path / "spool")],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
    )
    acknowledged: list[str] = []
    try:
        assert child.stdout is not None
        for _ in range(6):  # 300 acknowledged, then killed in the middle of the next batch
            acknowledged += json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    outage.end()
    restarted = spool_app(when_unreachable="spool")
    depth = restarted.spool_status().depth  # type: ignore[union-attr]
    assert len(acknowledged) <= depth <= len(acknowledged) + 50
    assert restarted.flush_spool() == depth
    stored = [r[1] for r in outage.rows()[1:]]
    assert len(stored) == len(set(stored)) == depth  # each once
    assert set(acknowledged) <= set(stored)  # nothing acknowledged is lost
    assert restarted.spool_status().depth == 0  # type: ignore[union-attr]


# -- bad input -----------------------------------------------------------------------
def test_bad_settings_fail_at_start_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with pytest.raises(ConfigurationError, match="when_unreachable must be"):
        Conveyor(url, when_unreachable="queue")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigurationError, match="spool folder"):
        Conveyor(url, when_unreachable="spool", spool_path=str(blocker / "spool"))
    newer = tmp_path / "newer"
    newer.mkdir()
    with contextlib.closing(sqlite3.connect(newer / SPOOL_FILE)) as conn:
        conn.execute("CREATE TABLE spool_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO spool_meta VALUES ('format', '99')")
        conn.commit()
    with pytest.raises(ConfigurationError, match="newer conveyor"):
        Conveyor(url, when_unreachable="spool", spool_path=str(newer))
    app = Conveyor(url)

    @app.task()
    def add(x: int) -> int:
        return x

    with pytest.raises(InvalidOptionError, match="when_unreachable"):
        add.using(when_unreachable="later")  # type: ignore[typeddict-item]
    app.close()


def test_a_transactional_enqueue_never_spools(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app = Conveyor(url, when_unreachable="spool", spool_path=str(tmp_path / "spool"),
                   unreachable_timeout=DEADLINE)

    @app.task()
    def add(x: int) -> int:
        return x

    add.enqueue(0)
    theirs = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    try:
        theirs.execute("BEGIN IMMEDIATE")  # the application's transaction holds the lock
        assert add.enqueue(1).spooled  # so the app's own connection cannot write now
        inside = add.using(connection=theirs).enqueue(2)
        assert inside.id is not None and not inside.spooled
        theirs.execute("COMMIT")
        assert app.spool_status().depth in (0, 1)  # the spooled one, maybe forwarded already
    finally:
        theirs.close()
        app.close()


# -- command line and metrics ----------------------------------------------------------
def test_cli_flush_fails_while_unreachable_then_forwards(
    spool_app: Callable[..., Conveyor], outage: Outage, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner
    from prometheus_client import generate_latest

    from conveyor.cli import cli
    from conveyor.observability.prometheus import JobMetrics

    name = f"spoolcli_{os.urandom(4).hex()}"  # a fresh module per test (imports are cached)
    module = tmp_path / f"{name}.py"
    # SQLite: the command's new app checks the schema on first use, a write that waits
    # for the lock; a short busy timeout keeps that (and its close) short.
    url = outage.app_url if outage.proxy else f"{outage.app_url}?busy_timeout=2"
    module.write_text(textwrap.dedent(f"""
        from conveyor import Conveyor
        app = Conveyor({url!r}, when_unreachable="spool",
                       spool_path={str(tmp_path / "spool")!r}, unreachable_timeout=0.3,
                       connect_timeout=1.0)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    app = spool_app(when_unreachable="spool")
    add = app.get_task("add")
    add.enqueue(0)
    outage.start()
    add.enqueue_many([(1,), (2,), (3,)])
    metrics = JobMetrics(app)
    text = generate_latest(metrics.registry).decode()
    assert "conveyor_spool_jobs 3.0" in text and "conveyor_spool_oldest_seconds" in text
    app.close(flush_timeout=0.0)  # left on disk
    runner = CliRunner()
    status = runner.invoke(cli, ["spool", "status", f"{name}:app", "--json"])
    assert status.exit_code == 0 and '"depth": 3' in status.output
    listed = runner.invoke(cli, ["spool", "list", f"{name}:app", "--json"])
    assert listed.output.count('"task": "add"') == 3
    down = runner.invoke(cli, ["spool", "flush", f"{name}:app"])
    assert down.exit_code == 1 and "3 job(s) stay in the spool" in down.output
    outage.end()
    up = runner.invoke(cli, ["spool", "flush", f"{name}:app"])
    assert up.exit_code == 0 and "forwarded 3 job(s)" in up.output, up.output
    assert len(outage.rows()) == 4
    metrics.close()


def test_a_forked_child_enqueues_with_its_own_threads(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}", when_unreachable="spool",
                   spool_path=str(tmp_path / "spool"), unreachable_timeout=1.0)

    @app.task()
    def add(x: int) -> int:
        return x

    add.enqueue(0)  # the parent's enqueue threads exist now; a child has none of them
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            job = add.enqueue(1)
            code = 0 if job.id is not None and not job.spooled else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert app.spool_status() is not None and app.spool_status().depth == 0  # type: ignore[union-attr]
    app.close()
