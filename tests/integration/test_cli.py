"""The command line, end to end: a real app module on disk, a real SQLite file,
real `python -m conveyor` processes (and click's CliRunner for the quick ones)."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from conveyor import JobState
from conveyor.cli import cli
from conveyor.cli.logs import JsonFormatter
from conveyor.cli.worker import split_queues

APP_SOURCE = """
import time

from conveyor import Conveyor, Retry

app = Conveyor({url!r}, poll_interval=0.05, lease=5.0, default_retry=Retry(base=0.01, cap=0.05))


@app.task()
def add(a: int, b: int) -> int:
    return a + b


@app.task(max_attempts=1)
def boom(reason: str) -> None:
    raise ValueError(reason)


@app.task()
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"
"""


@dataclass
class CliApp:
    """A user's app module written to disk, importable here and by child processes."""

    path: str
    """`module:app`, as typed on the command line."""
    module: ModuleType
    folder: Path
    db: Path

    @property
    def app(self) -> Any:
        return self.module.app

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_APP"}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.folder), *filter(None, [env.get("PYTHONPATH")])]
        )
        env.update(extra)
        return env

    def state(self, job_id: int) -> JobState | None:
        record = self.app.backend.job_get(job_id)
        return None if record is None else record.state


@pytest.fixture
def cli_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliApp]:
    # A fresh module name per test: sys.modules would otherwise hand every test
    # the first test's app (and database).
    name = f"cliapp_{uuid.uuid4().hex[:8]}"
    db = tmp_path / "jobs.db"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE.format(url=f"sqlite:///{db}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    module = importlib.import_module(name)
    yield CliApp(f"{name}:app", module, tmp_path, db)
    module.app.close()
    sys.modules.pop(name, None)


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def conveyor(
    cli_app: CliApp, *args: str, timeout: float = 60, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m conveyor ARGS` in the app's folder, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cli_app.folder, env=cli_app.env(**extra_env), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def run_burst(cli_app: CliApp) -> None:
    cli_app.app.worker(burst=True, install_signals=False).run()


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


# -- worker -------------------------------------------------------------------------
def test_worker_burst_in_a_subprocess_runs_every_job_and_exits_0(cli_app: CliApp) -> None:
    adds = [cli_app.module.add.enqueue(i, i) for i in range(5)]
    dead = cli_app.module.boom.enqueue("bad input")

    proc = conveyor(cli_app, "worker", cli_app.path, "--burst", "-c", "4", "--log-json")

    assert proc.returncode == 0, proc.stderr
    assert [job.wait(1) for job in adds] == [0, 2, 4, 6, 8]
    assert cli_app.state(dead.id) is JobState.DEAD
    # --log-json: stderr is all JSON lines, and the worker's lines say which worker.
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    started = [line for line in lines if "started" in line["message"]]
    assert started and started[0]["worker"] and started[0]["level"] == "info"


def test_worker_takes_the_app_from_conveyor_app_and_serves_only_the_queues_named(
    cli_app: CliApp,
) -> None:
    default_job = cli_app.module.add.enqueue(1, 1)
    other_job = cli_app.module.add.using(queue="other").enqueue(2, 2)

    proc = conveyor(cli_app, "worker", "--burst", "-q", "other", CONVEYOR_APP=cli_app.path)

    assert proc.returncode == 0, proc.stderr
    assert cli_app.state(other_job.id) is JobState.SUCCEEDED
    assert cli_app.state(default_job.id) is JobState.AVAILABLE


def test_worker_with_the_process_pool_gives_its_children_the_app_path(cli_app: CliApp) -> None:
    jobs = [cli_app.module.add.enqueue(i, 10) for i in range(3)]
    dead = cli_app.module.boom.enqueue("in a child")

    proc = conveyor(cli_app, "worker", cli_app.path, "--burst", "--pool", "process", "-c", "2",
                    "--max-jobs-per-child", "2")

    assert proc.returncode == 0, proc.stderr
    assert [job.wait(1) for job in jobs] == [10, 11, 12]
    assert cli_app.state(dead.id) is JobState.DEAD


def worker_process(cli_app: CliApp, *args: str) -> subprocess.Popen[str]:
    """`conveyor worker` on the CLI app, its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", cli_app.path, *args],
        cwd=cli_app.folder, env=cli_app.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_lets_the_running_job_finish_within_the_grace_period_and_exits_0(
    cli_app: CliApp,
) -> None:
    job = cli_app.module.nap.enqueue(1.5)
    proc = worker_process(cli_app, "--grace", "10")
    try:
        wait_for(lambda: cli_app.state(job.id) is JobState.RUNNING)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
        took = time.monotonic() - signalled
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    assert took < 10
    assert cli_app.state(job.id) is JobState.SUCCEEDED
    assert job.wait(1) == "rested"


def test_sigterm_past_the_grace_period_releases_the_job_and_exits_0(cli_app: CliApp) -> None:
    job = cli_app.module.nap.enqueue(30)
    proc = worker_process(cli_app, "--grace", "0.5")
    try:
        wait_for(lambda: cli_app.state(job.id) is JobState.RUNNING)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    record = cli_app.app.backend.job_get(job.id)
    assert record.state is JobState.AVAILABLE and record.lease_owner is None
    assert "released" in stderr


def test_sigusr1_prints_every_threads_stack_and_the_worker_runs_on(cli_app: CliApp) -> None:
    job = cli_app.module.nap.enqueue(30)
    proc = worker_process(cli_app, "--grace", "0")
    try:
        wait_for(lambda: cli_app.state(job.id) is JobState.RUNNING)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert proc.poll() is None, "SIGUSR1 must not stop the worker"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    # The slot thread running the task, at the task's own line.
    assert "Thread 0x" in stderr and "in nap" in stderr, stderr


def test_split_queues_takes_comma_lists_repeated_in_order_once_each() -> None:
    assert split_queues(("a,b", "c", " b , d,,")) == ["a", "b", "c", "d"]
    assert split_queues(()) == []


def test_json_log_lines_carry_the_job_fields_given_as_extra() -> None:
    record = logging.LogRecord("conveyor.worker", logging.WARNING, __file__, 1, "job %s", (7,),
                               None)
    for key, value in {"job_id": 7, "task": "add", "queue": "default", "attempt": 2,
                       "worker": "w1"}.items():
        setattr(record, key, value)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "job 7" and line["level"] == "warning"
    assert {k: line[k] for k in ("job_id", "task", "queue", "attempt", "worker")} == {
        "job_id": 7, "task": "add", "queue": "default", "attempt": 2, "worker": "w1"}


# -- status and jobs ------------------------------------------------------------------
def test_status_json_counts_jobs_per_queue_and_state(cli_app: CliApp) -> None:
    for i in range(3):
        cli_app.module.add.enqueue(i, 1)
    cli_app.module.boom.enqueue("no")
    run_burst(cli_app)
    cli_app.module.add.using(queue="later").enqueue(1, 2)
    cli_app.module.add.using(queue="later", delay=3600).enqueue(1, 2)

    result = invoke("status", cli_app.path, "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    queues = {q["queue"]: q for q in data["queues"]}
    assert queues["default"]["counts"] == {
        "available": 0, "scheduled": 0, "running": 0, "succeeded": 3, "dead": 1, "cancelled": 0}
    assert queues["later"]["counts"]["available"] == 1
    assert queues["later"]["counts"]["scheduled"] == 1
    assert queues["later"]["oldest_waiting_seconds"] >= 0
    assert queues["default"]["oldest_waiting_seconds"] is None
    assert data["totals"]["succeeded"] == 3 and data["totals"]["available"] == 1
    assert data["workers"] == []


def test_status_table_shows_queues_and_live_workers(cli_app: CliApp) -> None:
    cli_app.module.add.using(queue="idle").enqueue(1, 1)
    job = cli_app.module.nap.enqueue(30)
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", cli_app.path, "-c", "3", "--grace", "0"],
        cwd=cli_app.folder, env=cli_app.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: cli_app.state(job.id) is JobState.RUNNING)
        # The worker reports its running count with each heartbeat (every lease / 3).
        wait_for(lambda: [w.running for w in cli_app.app.backend.worker_list(60)] == [1])
        result = invoke("status", "-A", cli_app.path)
        as_json = json.loads(invoke("status", "-A", cli_app.path, "--json").stdout)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=15)
    assert result.exit_code == 0, result.output
    assert "idle" in result.stdout and "oldest waiting" in result.stdout
    assert "Workers alive: 1" in result.stdout
    [info] = as_json["workers"]
    assert info["id"] in result.stdout
    assert info["queues"] == ["default"] and info["concurrency"] == 3 and info["running"] == 1
    assert info["last_heartbeat_age_seconds"] < 60


def test_jobs_show_json_has_every_field_and_each_attempts_traceback(cli_app: CliApp) -> None:
    job = cli_app.module.boom.enqueue("the input was bad")
    run_burst(cli_app)

    result = invoke("jobs", "show", str(job.id), cli_app.path, "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id"] == job.id and data["task"] == "boom" and data["state"] == "dead"
    assert data["args"] == ["the input was bad"] and data["kwargs"] == {}
    assert data["attempt"] == 1 and data["max_attempts"] == 1
    assert data["finished_at"] and data["created_at"]
    [error] = data["errors"]
    assert error["type"] == "builtins.ValueError" and error["message"] == "the input was bad"
    assert "Traceback" in error["traceback"] and "raise ValueError(reason)" in error["traceback"]

    human = invoke("jobs", "show", str(job.id), cli_app.path)
    assert human.exit_code == 0, human.output
    assert "raise ValueError(reason)" in human.stdout and "attempt 1" in human.stdout


def test_jobs_show_of_a_missing_job_is_a_one_line_error(cli_app: CliApp) -> None:
    result = invoke("jobs", "show", "999", cli_app.path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: job 999 does not exist (never enqueued, or pruned after retention)"
    )


def test_jobs_list_filters_by_state_task_and_queue(cli_app: CliApp) -> None:
    ok = cli_app.module.add.enqueue(1, 2)
    bad = cli_app.module.boom.enqueue("x")
    run_burst(cli_app)
    waiting = cli_app.module.add.using(queue="q2").enqueue(3, 4)

    def ids(*args: str) -> list[int]:
        result = invoke("jobs", "list", "-A", cli_app.path, "--json", *args)
        assert result.exit_code == 0, result.output
        return [job["id"] for job in json.loads(result.stdout)]

    assert ids() == [waiting.id, bad.id, ok.id]
    assert ids("--state", "dead") == [bad.id]
    assert ids("--state", "succeeded", "--state", "available") == [waiting.id, ok.id]
    assert ids("--task", "add") == [waiting.id, ok.id]
    assert ids("--queue", "q2") == [waiting.id]
    assert ids("--limit", "1") == [waiting.id]
    table = invoke("jobs", "list", "-A", cli_app.path)
    assert "ValueError: x" in table.stdout


# -- the dead-letter queue ------------------------------------------------------------
def test_dlq_list_json_shows_the_dead_job_and_its_last_error(cli_app: CliApp) -> None:
    cli_app.module.add.enqueue(1, 1)
    dead = cli_app.module.boom.enqueue("payload is not a date")
    run_burst(cli_app)

    result = invoke("dlq", "list", cli_app.path, "--json")

    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert entry["id"] == dead.id and entry["task"] == "boom" and entry["attempts"] == 1
    assert entry["last_error"]["type"] == "builtins.ValueError"
    assert entry["last_error"]["message"] == "payload is not a date"
    assert entry["finished_at"]
    table = invoke("dlq", "list", cli_app.path)
    assert "ValueError: payload is not a date" in table.stdout
    assert json.loads(invoke("dlq", "list", cli_app.path, "--json", "--task", "add").stdout) == []


def test_dlq_retry_by_id_moves_the_job_back_to_available(cli_app: CliApp) -> None:
    dead = cli_app.module.boom.enqueue("x")
    other = cli_app.module.boom.enqueue("y")
    run_burst(cli_app)

    result = invoke("dlq", "retry", str(dead.id), "-A", cli_app.path)

    assert result.exit_code == 0, result.output
    assert "retried 1" in result.stdout
    record = cli_app.app.backend.job_get(dead.id)
    assert record.state is JobState.AVAILABLE and record.attempt == 0
    assert len(record.errors) == 1  # the history stays
    assert cli_app.state(other.id) is JobState.DEAD


def test_dlq_retry_of_a_job_that_is_not_dead_fails_and_says_which(cli_app: CliApp) -> None:
    waiting = cli_app.module.add.enqueue(1, 1)
    result = invoke("dlq", "retry", cli_app.path, str(waiting.id))
    assert result.exit_code == 1
    assert f"job(s) {waiting.id} not retried" in result.stderr
    assert cli_app.state(waiting.id) is JobState.AVAILABLE


def test_dlq_retry_needs_ids_or_all(cli_app: CliApp) -> None:
    result = invoke("dlq", "retry", "-A", cli_app.path)
    assert result.exit_code == 1 and "name the dead jobs to retry" in result.stderr
    both = invoke("dlq", "retry", "-A", cli_app.path, "1", "--all")
    assert both.exit_code == 1 and "not both" in both.stderr


def test_dlq_retry_all_asks_first_and_honours_the_filters(cli_app: CliApp) -> None:
    first = cli_app.module.boom.enqueue("a")
    second = cli_app.module.boom.using(queue="other").enqueue("b")
    cli_app.app.worker(burst=True, install_signals=False, queues=["default", "other"]).run()

    declined = invoke("dlq", "retry", "--all", "-A", cli_app.path, input="n\n")
    assert declined.exit_code == 1 and "Retry 2 dead job(s)?" in declined.output
    assert cli_app.state(first.id) is JobState.DEAD

    narrowed = invoke("dlq", "retry", "--all", "--queue", "other", "-A", cli_app.path,
                      input="y\n")
    assert narrowed.exit_code == 0, narrowed.output
    assert "Retry 1 dead job(s) (queue=other)?" in narrowed.output
    assert cli_app.state(first.id) is JobState.DEAD
    assert cli_app.state(second.id) is JobState.AVAILABLE

    forced = invoke("dlq", "retry", "--all", "--yes", "-A", cli_app.path)
    assert forced.exit_code == 0 and "retried 1" in forced.stdout
    assert cli_app.state(first.id) is JobState.AVAILABLE


def test_dlq_purge_asks_first_then_deletes_only_dead_jobs(cli_app: CliApp) -> None:
    ok = cli_app.module.add.enqueue(1, 1)
    dead = [cli_app.module.boom.enqueue(str(i)) for i in range(3)]
    run_burst(cli_app)

    declined = invoke("dlq", "purge", cli_app.path, input="n\n")
    assert declined.exit_code == 1
    assert all(cli_app.state(job.id) is JobState.DEAD for job in dead)

    result = invoke("dlq", "purge", cli_app.path, "--yes")

    assert result.exit_code == 0, result.output
    assert "deleted 3 dead job(s)" in result.stdout
    assert all(cli_app.state(job.id) is None for job in dead)
    assert cli_app.state(ok.id) is JobState.SUCCEEDED
    again = invoke("dlq", "purge", cli_app.path, "--yes")
    assert again.exit_code == 0 and "nothing to purge" in again.stdout


# -- migrate --------------------------------------------------------------------------
def test_migrate_dry_run_on_a_fresh_database_prints_the_sql_and_changes_nothing(
    cli_app: CliApp,
) -> None:
    assert not cli_app.db.exists()

    result = invoke("migrate", cli_app.path, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "CREATE TABLE conveyor_jobs" in result.stdout
    with sqlite3.connect(cli_app.db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "conveyor_jobs" not in tables

    applied = invoke("migrate", cli_app.path)
    assert applied.exit_code == 0 and "applied migration 0001" in applied.stdout
    after = invoke("migrate", cli_app.path, "--dry-run")
    assert after.exit_code == 0 and "nothing to migrate" in after.stdout
    assert "CREATE TABLE" not in after.stdout


# -- naming the app, and errors -------------------------------------------------------
def test_a_missing_app_is_a_one_line_error_without_a_traceback(cli_app: CliApp) -> None:
    result = invoke("status")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: name your app: conveyor status")
    assert "CONVEYOR_APP" in result.stderr

    proc = conveyor(cli_app, "worker")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: name your app: conveyor worker") and "CONVEYOR_APP" in line


def test_an_app_that_cannot_be_imported_is_a_one_line_error(cli_app: CliApp) -> None:
    proc = conveyor(cli_app, "dlq", "list", "no_such_module:app")
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: cannot import 'no_such_module'")

    not_an_app = invoke("status", f"{cli_app.module.__name__}:add")
    assert not_an_app.exit_code == 1
    assert "is not a Conveyor app" in not_an_app.stderr


def test_the_app_comes_from_the_argument_then_the_option_then_the_environment(
    cli_app: CliApp,
) -> None:
    from_env = invoke("status", "--json", env={"CONVEYOR_APP": cli_app.path})
    assert from_env.exit_code == 0, from_env.output
    twice = invoke("status", cli_app.path, "-A", "other:app")
    assert twice.exit_code == 1 and "named twice" in twice.stderr


def test_a_bad_worker_setting_is_a_one_line_error(cli_app: CliApp) -> None:
    result = invoke("worker", cli_app.path, "--lease", "1", "--poll-interval", "0.1",
                    "--burst", "--concurrency", "0")
    assert result.exit_code == 2  # click's own usage error
    assert "concurrency" in result.stderr


# -- demo -----------------------------------------------------------------------------
def test_demo_runs_to_completion_and_shows_the_dead_poison_jobs(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_APP"}
    started = time.monotonic()

    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--db", str(db)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started < 60
    out = proc.stdout
    assert "all 60 jobs finished" in out
    assert "poison" in out and "dead" in out and "dead-letter queue" in out
    assert "conveyor dlq list --app conveyor.demo:app" in out
    with sqlite3.connect(db) as conn:
        states = dict(conn.execute(
            "SELECT state, count(*) FROM conveyor_jobs GROUP BY state").fetchall())
        dead_tasks = {row[0] for row in conn.execute(
            "SELECT task FROM conveyor_jobs WHERE state = 'dead'")}
    assert states == {"succeeded": 57, "dead": 3}
    assert dead_tasks == {"poison"}


def test_demo_refuses_to_delete_a_file_that_is_not_a_conveyor_database(tmp_path: Path) -> None:
    precious = tmp_path / "notes.db"
    precious.write_text("my notes")
    result = invoke("demo", "--db", str(precious), "--jobs", "5")
    assert result.exit_code == 1 and "not a conveyor database" in result.stderr
    assert precious.read_text() == "my notes"


def test_demo_starts_fresh_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        result = invoke("demo", "--db", "again.db", "--jobs", "10")
        assert result.exit_code == 0, result.output
        assert "all 10 jobs finished" in result.stdout
    with sqlite3.connect(tmp_path / "again.db") as conn:
        assert conn.execute("SELECT count(*) FROM conveyor_jobs").fetchone()[0] == 10


def test_ctrl_c_stops_the_demo_cleanly_with_no_job_left_running(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_APP"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "demo", "--db", str(db), "--jobs", "3000"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def some_succeeded() -> bool:
        if not db.exists():
            return False
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM conveyor_jobs WHERE state = 'succeeded'").fetchone()
        except sqlite3.OperationalError:  # tables not created yet
            return False
        return bool(row[0])

    try:
        wait_for(some_succeeded)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, out + err
    assert "interrupted" in out and "Traceback" not in err
    with sqlite3.connect(db) as conn:
        states = dict(conn.execute(
            "SELECT state, count(*) FROM conveyor_jobs GROUP BY state").fetchall())
    assert "running" not in states  # finished within the grace period, or released
    assert states.get("available", 0) + states.get("scheduled", 0) > 0


def test_demo_serve_keeps_a_worker_and_the_dashboard_until_ctrl_c(tmp_path: Path) -> None:
    import re
    import urllib.request

    db = tmp_path / "serve.db"
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_APP"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "demo", "--db", str(db), "--jobs", "10", "--serve"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("keep running" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        url = re.search(r"http://127\.0\.0\.1:\d+/", lines[-1])
        assert url is not None, lines[-1]
        with urllib.request.urlopen(url.group(0), timeout=10) as page:
            assert page.status == 200 and "conveyor" in page.read().decode()
        with sqlite3.connect(db) as conn:
            dead_id, errors = conn.execute(
                "SELECT id, json_array_length(errors) FROM conveyor_jobs WHERE state = 'dead' "
                "ORDER BY id LIMIT 1").fetchone()
        request = urllib.request.Request(
            f"{url.group(0)}api/v1/jobs/{dead_id}/retry", method="POST", data=b"",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

        def ran_again() -> bool:
            with sqlite3.connect(db) as conn:
                row = conn.execute(
                    "SELECT state, json_array_length(errors) FROM conveyor_jobs WHERE id = ?",
                    (dead_id,)).fetchone()
            return bool(row[0] == "dead" and row[1] > errors)

        wait_for(ran_again)  # the poison job ran its fresh attempts on the serving worker
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, out + err
    assert "stopped" in out and "Traceback" not in err


def test_dlq_retry_all_without_an_answer_says_to_pass_yes(cli_app: CliApp) -> None:
    dead = cli_app.module.boom.enqueue("a")
    run_burst(cli_app)
    result = invoke("dlq", "retry", "--all", "-A", cli_app.path, input="")
    assert result.exit_code == 1
    assert "Aborted" not in result.output and "pass --yes" in result.stderr
    assert cli_app.state(dead.id) is JobState.DEAD


def test_the_demo_names_conveyor_as_this_shell_can_run_it(tmp_path: Path) -> None:
    from conveyor.cli.demo import invoked_as

    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    script = venv_bin / "conveyor"
    script.write_text("#!/bin/sh\n")
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        # Not on PATH (the README's venv was never activated): the path that was run.
        assert invoked_as(str(script)) == os.path.join(".venv", "bin", "conveyor")
    finally:
        os.chdir(here)
    assert invoked_as("/nonexistent/__main__.py").endswith("-m conveyor")


def test_a_missing_dependency_of_the_app_module_names_it_with_the_traceback(
    cli_app: CliApp,
) -> None:
    (cli_app.folder / "needs_dep.py").write_text(
        "import conveyor\n"
        "import not_installed_dep  # the user's own import\n"
        "app = conveyor.Conveyor()\n"
    )
    proc = conveyor(cli_app, "status", "needs_dep:app")
    assert proc.returncode == 1
    assert "'not_installed_dep'" in proc.stderr and "was found" in proc.stderr
    assert "PYTHONPATH" not in proc.stderr  # not the misleading "run from the folder" hint
    assert "needs_dep.py\", line 2" in proc.stderr  # the real cause, where it is


def test_process_pool_children_start_without_a_runpy_warning(cli_app: CliApp) -> None:
    cli_app.module.add.enqueue(1, 2)
    proc = conveyor(cli_app, "worker", cli_app.path, "--pool", "process", "-c", "1", "--burst")
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" not in proc.stderr and "found in sys.modules" not in proc.stderr
    assert cli_app.app.backend.queue_stats()[0].counts[JobState.SUCCEEDED] == 1


def test_the_worker_says_which_declared_queues_it_does_not_serve(cli_app: CliApp) -> None:
    url = cli_app.app.url
    (cli_app.folder / "mailapp.py").write_text(
        f"from conveyor import Conveyor\napp = Conveyor({url!r}, poll_interval=0.05)\n"
        "@app.task(queue='mail')\ndef send(to: str) -> None: ...\n"
        "@app.task()\ndef add(a: int) -> int:\n    return a\n"
    )
    proc = conveyor(cli_app, "worker", "mailapp:app", "--burst")
    assert proc.returncode == 0, proc.stderr
    assert "serving queue(s): default" in proc.stderr
    assert "not serving queue(s) that tasks of this app use: mail (send)" in proc.stderr
    assert "-q default,mail" in proc.stderr
    served = conveyor(cli_app, "worker", "mailapp:app", "-q", "default,mail", "--burst")
    assert served.returncode == 0 and "not serving" not in served.stderr
