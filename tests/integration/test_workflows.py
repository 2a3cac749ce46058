"""Workflows with real worker processes, on both backends: a chord whose workers are
SIGKILLed calls back once with every result, a 10,000-node DAG inserted in one
transaction runs every node after its parents, a cancelled workflow starts nothing
more, and a dead parent's dependants are cancelled or run as their policy says."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState, Workflow, chord
from conveyor.backends.base import JobFilter

pytestmark = pytest.mark.slow

WORKFLOW_APP = textwrap.dedent(
    """
    import os, time
    from conveyor import Conveyor

    app = Conveyor(os.environ["CONVEYOR_URL"], poll_interval=0.05)
    HISTORY = os.environ["HISTORY"]

    def log(line):
        fd = os.open(HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\\n").encode())
        finally:
            os.close(fd)

    @app.task(name="leaf", max_attempts=50)
    def leaf(n: int, pause: float = 0.0) -> int:
        log(f"start {n} {time.time()!r}")
        if pause:
            time.sleep(pause)
        log(f"end {n} {time.time()!r}")
        return n

    @app.task(name="collect", max_attempts=50)
    def collect(results: list, label: str) -> int:
        log(f"callback {label} {len(results)} {results == list(range(len(results)))}")
        return len(results)
    """
)


def _worker(tmp: Path, url: str, history: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVEYOR_URL": url, "HISTORY": str(history),
           "PYTHONPATH": os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")])}
    log = (tmp / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "wfapp:app", "--poll-interval", "0.05",
         *args],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait(condition: Callable[[], bool], timeout: float, what: str, tmp: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text()[-2000:] for p in tmp.glob("*.log"))
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(0.1)


@pytest.fixture
def wf_app(tmp_path: Path, backend_url: str) -> Conveyor:
    (tmp_path / "wfapp.py").write_text(WORKFLOW_APP)
    app = Conveyor(backend_url, poll_interval=0.05)
    app.migrate()

    @app.task(name="leaf", max_attempts=50)
    def leaf(n: int, pause: float = 0.0) -> int: ...

    @app.task(name="collect", max_attempts=50)
    def collect(results: list[int], label: str) -> int: ...

    return app


def _state(app: Conveyor, job_id: int | None) -> JobState:
    assert job_id is not None
    record = app.backend.job_get(job_id)
    assert record is not None
    return record.state


def test_chord_over_1000_children_calls_back_once_with_every_result_while_workers_die(
    tmp_path: Path, backend_url: str, wf_app: Conveyor
) -> None:
    app = wf_app
    history = tmp_path / "history.txt"
    leaf, collect = app.tasks["leaf"], app.tasks["collect"]
    handle = app.enqueue_workflow(chord(
        [leaf.prepare(n, 0.01) for n in range(1000)], collect.prepare_partial("big"),
    ))
    callback = handle.jobs[-1]
    record0 = app.backend.job_get(callback.id or 0)
    assert record0 is not None and record0.state == JobState.SCHEDULED  # pending
    rng = random.Random(13)
    workers = [_worker(tmp_path, backend_url, history, f"w{i}", "--lease", "1",
                       "--concurrency", "4") for i in range(2)]
    kills = 0

    def ended() -> int:
        return history.read_text().count("end ") if history.exists() else 0

    try:
        # Kill a random worker at a random moment, each time only once the fleet has
        # made progress since the last kill (a worker still starting up on a loaded
        # machine proves nothing when killed), at most eight times.
        deadline = time.monotonic() + 120
        seen = ended()
        while _state(app, callback.id) != JobState.SUCCEEDED:
            assert time.monotonic() < deadline, (
                f"the chord did not finish in 120 s: {kills} kills, {ended()} ends, "
                f"callback {app.backend.workflow_nodes(handle.id)[-1]}")
            time.sleep(rng.uniform(0.3, 0.8))
            if kills >= 8 or ended() < seen + 20:
                continue
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            kills += 1
            seen = ended()
            workers[victim] = _worker(tmp_path, backend_url, history, f"w{victim}",
                                      "--lease", "1", "--concurrency", "4")
    finally:
        for proc in workers:
            _stop(proc)
    lines = history.read_text().splitlines()
    callbacks = [line for line in lines if line.startswith("callback big")]
    assert kills >= 2
    lost = sum(1 for j in handle.jobs[:-1] if any(
        e.type.endswith("LeaseExpired") for e in (app.backend.job_get(j.id or 0) or record0).errors
    ))
    assert lost >= 1, "no kill landed while a child was held: the test proved nothing"
    assert callbacks == ["callback big 1000 True"], callbacks
    ended = {int(line.split()[1]) for line in lines if line.startswith("end ")}
    assert ended == set(range(1000))
    record = app.backend.job_get(callback.id)
    assert record is not None and record.result == 1000


def test_random_dag_of_10000_nodes_runs_every_node_after_its_parents(
    tmp_path: Path, backend_url: str, wf_app: Conveyor
) -> None:
    app = wf_app
    history = tmp_path / "history.txt"
    leaf = app.tasks["leaf"]
    rng = random.Random(7)
    wf = Workflow("dag")
    nodes = []
    parents_of: dict[int, list[int]] = {}
    for layer in range(100):
        below = nodes[max(0, (layer - 3) * 100):layer * 100]
        for _ in range(100):
            n = len(nodes)
            parents = rng.sample(below, min(len(below), rng.randint(1, 3))) if below else []
            parents_of[n] = [p.index for p in parents]
            nodes.append(wf.add(leaf.prepare(n), depends_on=parents))
    before = len(app.backend.job_list(JobFilter(limit=10)))
    handle = app.enqueue_workflow(wf)  # one transaction
    assert before == 0 and len(handle.jobs) == 10_000
    workers = [_worker(tmp_path, backend_url, history, f"w{i}", "--concurrency", "8")
               for i in range(2)]
    try:
        view = app.operations.get_workflow(handle.id)
        assert view is not None
        _wait(lambda: app.backend.job_get(handle.jobs[-1].id or 0) is not None and all(
            n.state == JobState.SUCCEEDED for n in app.backend.workflow_nodes(handle.id)
        ), 240, "every node of the DAG to succeed", tmp_path)
    finally:
        for proc in workers:
            _stop(proc)
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    for line in history.read_text().splitlines():
        kind, n, at = line.split()
        (starts if kind == "start" else ends).setdefault(int(n), float(at))
    assert len(starts) == 10_000 and len(ends) == 10_000
    early = [(n, p) for n, parents in parents_of.items() for p in parents
             if starts[n] < ends[p]]
    assert not early, f"{len(early)} nodes started before a parent ended, e.g. {early[:3]}"


def test_cancelling_a_workflow_with_100_pending_nodes_starts_none_of_them(
    tmp_path: Path, backend_url: str, wf_app: Conveyor
) -> None:
    app = wf_app
    history = tmp_path / "history.txt"
    leaf = app.tasks["leaf"]
    wf = Workflow("cancel me")
    gate = wf.add(leaf.prepare(-1, 1.5))
    for n in range(100):
        wf.add(leaf.prepare(n), depends_on=[gate])
    handle = app.enqueue_workflow(wf)
    worker = _worker(tmp_path, backend_url, history, "w", "--concurrency", "4")
    try:
        _wait(lambda: history.exists() and "start -1 " in history.read_text(), 30,
              "the first node to start", tmp_path)
        view = app.operations.get_workflow(handle.id)
        assert view is not None and view.counts()["pending"] == 100
        cancelled = app.operations.cancel_workflow(handle.id, actor="test", source="test")
        assert cancelled == 100
        _wait(lambda: _state(app, handle.jobs[0].id) == JobState.SUCCEEDED, 30,
              "the running node to finish", tmp_path)
        time.sleep(0.5)  # a few polls: anything released would start now
    finally:
        _stop(worker)
    started = [line for line in history.read_text().splitlines() if line.startswith("start ")]
    assert started == [started[0]] and started[0].startswith("start -1 ")
    assert all(_state(app, j.id) == JobState.CANCELLED for j in handle.jobs[1:])
    assert app.operations.cancel_workflow(handle.id, actor="test", source="test") == 0
    assert app.operations.cancel_workflow("no-such-id", actor="test", source="test") is None


# -- policies and bad input (in-process workers: drain) ----------------------------------
def test_a_dead_parent_cancels_its_dependants_or_lets_them_run_as_each_says(
    make_app: Callable[..., Conveyor],
) -> None:
    from conveyor.testing import drain

    app = make_app()
    ran: list[str] = []

    @app.task(name="ok")
    def ok(label: str) -> str:
        ran.append(label)
        return label

    @app.task(name="fails", max_attempts=1)
    def fails() -> None:
        raise ValueError("this parent dies")

    @app.task(name="gather")
    def gather(results: list[str | None], label: str) -> str:
        ran.append(f"{label}:{results}")
        return label

    wf = Workflow("policies")
    good = wf.add(ok.prepare("good"))
    bad = wf.add(fails.prepare())
    cancelled = wf.add(ok.prepare("never"), depends_on=[good, bad])
    grandchild = wf.add(ok.prepare("never either"), depends_on=[cancelled])
    anyway = wf.add(gather.prepare_partial("anyway"), depends_on=[good, bad],
                    runs_when="finished", inputs="all")
    after_cancelled = wf.add(ok.prepare("after cancelled"), depends_on=[cancelled],
                             runs_when="finished")
    on_failure = wf.add(ok.prepare("on failure"), depends_on=[good, bad], runs_when="failed")
    only_good = wf.add(ok.prepare("never: all succeeded"), depends_on=[good],
                       runs_when="failed")
    handle = app.enqueue_workflow(wf)
    drain(app, timeout=30)
    states = {node.index: _state(app, handle.jobs[node.index].id) for node in
              (good, bad, cancelled, grandchild, anyway, after_cancelled, on_failure, only_good)}
    assert states == {
        good.index: JobState.SUCCEEDED, bad.index: JobState.DEAD,
        cancelled.index: JobState.CANCELLED, grandchild.index: JobState.CANCELLED,
        anyway.index: JobState.SUCCEEDED, after_cancelled.index: JobState.SUCCEEDED,
        on_failure.index: JobState.SUCCEEDED, only_good.index: JobState.CANCELLED,
    }
    assert sorted(ran) == sorted(["good", "anyway:['good', None]", "after cancelled",
                                  "on failure"])
    view = app.operations.get_workflow(handle.id)
    assert view is not None
    assert view.counts() == {"succeeded": 4, "dead": 1, "cancelled": 3}


def test_chains_pass_each_result_on_and_a_chord_over_nothing_calls_back_once_with_empty(
    make_app: Callable[..., Conveyor],
) -> None:
    from conveyor import batch, chain
    from conveyor.testing import drain

    app = make_app()
    calls: list[object] = []

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="seen")
    def seen(results: list[int]) -> int:
        calls.append(results)
        return len(results)

    links = app.enqueue_workflow(
        chain(add.prepare(1, 2), add.prepare_partial(10), add.prepare_partial(100)))
    empty = app.enqueue_workflow(chord([], seen.prepare_partial()))
    assert _state(app, empty.jobs[0].id) == JobState.AVAILABLE  # nothing to wait for
    counted = app.enqueue_workflow(batch([add.prepare(i, i) for i in range(3)],
                                         on_success=seen.prepare_partial(),
                                         on_failure=seen.prepare_partial()))
    drain(app, timeout=30)
    assert [app.backend.job_get(j.id or 0).result for j in links.jobs] == [3, 13, 113]  # type: ignore[union-attr]
    assert calls.count([]) == 1 and [0, 2, 4] in calls and len(calls) == 2
    assert _state(app, counted.jobs[-1].id) == JobState.CANCELLED  # on_failure: none failed


def test_a_cycle_in_depends_on_is_refused_and_stores_nothing(
    make_app: Callable[..., Conveyor],
) -> None:
    from conveyor import WorkflowCycleError

    app = make_app()

    @app.task(name="step")
    def step(n: int) -> None: ...

    wf = Workflow("loop")
    a = wf.add(step.prepare(1))
    b = wf.add(step.prepare(2), depends_on=[a])
    c = wf.add(step.prepare(3), depends_on=[b])
    wf.after(a, c)
    with pytest.raises(WorkflowCycleError, match=r"cycle in depends_on: .*step.*remove one"):
        app.enqueue_workflow(wf)
    selfish = Workflow("self")
    d = selfish.add(step.prepare(4))
    selfish.after(d, d)
    with pytest.raises(WorkflowCycleError):
        app.enqueue_workflow(selfish)
    assert app.backend.job_list(JobFilter(limit=10)) == []
    assert app.backend.workflow_list() == []


def test_a_workflow_enqueued_in_the_apps_transaction_exists_only_if_it_commits(
    backend_url: str, make_app: Callable[..., Conveyor],
) -> None:
    from conveyor import chain

    app = make_app()

    @app.task(name="step")
    def step(n: int) -> int:
        return n

    def connect() -> object:
        if backend_url.startswith("sqlite"):
            import sqlite3
            app.backend.job_list(JobFilter(limit=1))  # the file and schema exist
            return sqlite3.connect(backend_url.removeprefix("sqlite:///"), isolation_level=None)
        import psycopg
        return psycopg.connect(backend_url)

    for commit in (False, True):
        conn = connect()
        if backend_url.startswith("sqlite"):
            conn.execute("BEGIN")  # type: ignore[attr-defined]
        handle = app.enqueue_workflow(
            chain(step.prepare(1), step.prepare_partial()), connection=conn)
        if commit:
            conn.commit()  # type: ignore[attr-defined]
        else:
            conn.rollback()  # type: ignore[attr-defined]
        conn.close()  # type: ignore[attr-defined]
        assert (app.backend.workflow_get(handle.id) is not None) is commit
        assert (app.backend.job_get(handle.jobs[1].id or 0) is not None) is commit


def test_conveyor_workflow_show_lists_every_node_with_its_state_and_cancel_stops_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json
    import uuid

    from click.testing import CliRunner

    from conveyor.cli import cli

    name = f"wfcli_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        from conveyor import Conveyor
        app = Conveyor("sqlite:///{tmp_path / 'jobs.db'}")

        @app.task(name="add")
        def add(x: int, y: int) -> int:
            return x + y
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    import importlib
    module = importlib.import_module(name)
    add = module.app.tasks["add"]
    handle = module.app.enqueue_workflow(
        chord([add.prepare(1, 2), add.prepare(3, 4)], add.prepare_partial(10), name="sums"))

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli, [*args, f"{name}:app"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    shown = invoke("workflow", "show", handle.id)
    assert "sums" in shown and "pending (waits for 2)" in shown and "2 available" in shown
    data = json.loads(invoke("workflow", "show", handle.id, "--json"))
    assert [n["state"] for n in data["nodes"]] == ["available", "available", "pending"]
    assert sorted((e["parent"], e["child"]) for e in data["edges"]) == [
        (handle.jobs[0].id, handle.jobs[2].id), (handle.jobs[1].id, handle.jobs[2].id)]
    assert handle.id in invoke("workflow", "list")
    assert "3 node(s) cancelled" in invoke("workflow", "cancel", handle.id)
    data = json.loads(invoke("workflow", "show", handle.id, "--json"))
    assert data["counts"] == {"cancelled": 3} and data["cancelled_at"] is not None
    missing = CliRunner().invoke(cli, ["workflow", "show", "nope", f"{name}:app"])
    assert missing.exit_code == 1 and "workflow nope does not exist" in missing.output
    module.app.close()
    sys.modules.pop(name, None)
