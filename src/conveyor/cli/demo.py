"""`conveyor demo`: the zero-setup showcase.

A fresh SQLite file, a mixed workload (fast, slow, flaky, rate-limited and
poison jobs), one in-process worker in a background thread, a live table of
job states, then a summary and where to look next. Ctrl-C stops the worker
cleanly (running jobs finish or are released) and exits 130.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sqlite3
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from conveyor.app import Conveyor
from conveyor.backends.base import JobFilter
from conveyor.cli.common import CliError, console, short_type
from conveyor.cli.logs import configure_logging
from conveyor.cli.status import STATE_STYLES
from conveyor.clock import format_duration
from conveyor.demo import DEMO_URL_ENV, QUEUES, TASK_NAMES, create_app, enqueue_workload
from conveyor.types import JobRecord, JobState
from conveyor.worker import Worker

DEFAULT_DB = Path("conveyor-demo.db")
DEADLINE = 120.0
"""Seconds after which the demo gives up waiting (it normally takes a few)."""
LIVE_STATES = (
    JobState.AVAILABLE, JobState.SCHEDULED, JobState.RUNNING, JobState.SUCCEEDED, JobState.DEAD,
)
SQLITE_HEADER = b"SQLite format 3\x00"


def fresh_database(db: Path) -> None:
    """Delete the demo database (and its WAL files), refusing to touch anything else."""
    if db.exists() and db.stat().st_size > 0:
        with db.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        tables: set[str] = set()
        if header == SQLITE_HEADER:
            try:
                conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
                try:
                    tables = {row[0] for row in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    )}
                finally:
                    conn.close()
            except sqlite3.Error:
                tables = {"?"}
        if header != SQLITE_HEADER or (tables and "conveyor_jobs" not in tables):
            raise CliError(
                f"{db} exists and is not a conveyor database: the demo starts from a fresh file "
                "and will not delete it; pick another --db"
            )
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


class DashboardThread:
    """The dashboard served on 127.0.0.1 while the demo runs (when the web extra is here)."""

    def __init__(self, app: Conveyor) -> None:
        self.url: str | None = None
        self._socket: socket.socket | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        try:
            import uvicorn

            from conveyor.web import create_app as create_web_app
        except ImportError:
            return
        # Bound here and handed to uvicorn, so nothing can take the port in between.
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind(("127.0.0.1", 8000))
        except OSError:
            self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            create_web_app(app, auth=False), host="127.0.0.1", port=port, log_level="error",
            lifespan="off", server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]},
            name="conveyor-demo-dashboard", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 5
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        if self._server.started:
            self.url = f"http://127.0.0.1:{port}/"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()


def _run_worker(worker: Worker, failures: list[BaseException]) -> None:
    try:
        worker.run()
    except BaseException as exc:
        failures.append(exc)


def _read(app: Conveyor, total: int) -> list[JobRecord]:
    # The demo database is fresh, so every job in it is one of ours.
    return app.backend.job_list(JobFilter(limit=total + 1))


def live_view(records: list[JobRecord], total: int, elapsed: float) -> Group:
    counts: dict[str, Counter[JobState]] = defaultdict(Counter)
    for r in records:
        counts[r.task][r.state] += 1
    table = Table(title="conveyor demo: jobs by task and state", title_justify="left")
    table.add_column("task", style="bold")
    for state in LIVE_STATES:
        table.add_column(str(state), justify="right", style=STATE_STYLES[state])
    for name in TASK_NAMES:
        if name in counts:
            table.add_row(name, *(str(counts[name][state]) for state in LIVE_STATES))
    finished = sum(1 for r in records if r.state.finished)
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        ProgressBar(total=total, completed=finished, width=40),
        Text(f"{finished}/{total} finished in {elapsed:.1f}s"),
    )
    return Group(table, progress)


def summary_table(records: list[JobRecord]) -> Table:
    table = Table(title="Summary", title_justify="left")
    table.add_column("task", style="bold")
    table.add_column("jobs", justify="right")
    table.add_column("succeeded", justify="right", style="green")
    table.add_column("dead", justify="right", style="red")
    table.add_column("attempts", justify="right")
    table.add_column("avg run time", justify="right")
    by_task: dict[str, list[JobRecord]] = defaultdict(list)
    for r in records:
        by_task[r.task].append(r)
    for name in TASK_NAMES:
        jobs = by_task.get(name, [])
        if not jobs:
            continue
        runs = [
            (r.finished_at - r.started_at).total_seconds()
            for r in jobs if r.started_at is not None and r.finished_at is not None
        ]
        table.add_row(
            name, str(len(jobs)),
            str(sum(1 for r in jobs if r.state is JobState.SUCCEEDED)),
            str(sum(1 for r in jobs if r.state is JobState.DEAD)),
            str(sum(r.attempt for r in jobs)),
            format_duration(sum(runs) / len(runs)) if runs else "-",
        )
    return table


def explain(records: list[JobRecord], db: Path, out: Console) -> None:
    by_task: dict[str, list[JobRecord]] = defaultdict(list)
    for r in records:
        by_task[r.task].append(r)
    points = [
        f"{len(records)} jobs were stored in [cyan]{escape(str(db))}[/] (SQLite: no server, "
        f"no set-up) and one worker ran them on 8 threads, across the queues "
        f"{' and '.join(QUEUES)}."
    ]
    flaky = by_task.get("flaky", [])
    if flaky:
        failed = sum(len(r.errors) for r in flaky)
        points.append(
            f"{len(flaky)} [bold]flaky[/] jobs hit {failed} ConnectionErrors between them: each "
            "failed attempt was recorded, then retried after an exponential backoff with "
            "jitter, until it succeeded."
        )
    limited = by_task.get("rate_limited", [])
    if limited:
        points.append(
            f"{len(limited)} [bold]rate_limited[/] jobs raised RetryAfter(0.2), as for an HTTP "
            "429 with Retry-After: they came back exactly that much later."
        )
    dead = sorted((r for r in records if r.state is JobState.DEAD), key=lambda r: r.id)
    if dead:
        errors = Counter(short_type(r.errors[-1].type) for r in dead if r.errors)
        why = ", ".join(f"{name} x{n}" for name, n in errors.most_common()) or "no error"
        tasks = ", ".join(sorted({r.task for r in dead}))
        ids = ", ".join(str(r.id) for r in dead[:10]) + ("…" if len(dead) > 10 else "")
        points.append(
            f"[bold red]{len(dead)} dead[/] ({tasks}): they failed every attempt ({why}) and "
            f"now wait in the dead-letter queue, job ids {ids}. Nothing is lost: they stay "
            "until you retry or purge them."
        )
    out.print()
    out.print("[bold]What just happened[/]")
    bullets = Table.grid(padding=(0, 1))
    bullets.add_column(no_wrap=True)
    bullets.add_column()
    for point in points:
        bullets.add_row("  •", point)
    out.print(bullets)

    prefix = "" if db == DEFAULT_DB else f"{DEMO_URL_ENV}={shlex.quote('sqlite:///' + str(db))} "
    app = "--app conveyor.demo:app"
    first = dead[0].id if dead else (records[0].id if records else 1)
    conveyor = invoked_as()
    steps = [
        ("the dead jobs and their last error", f"{conveyor} dlq list {app}"),
        ("one job, with every attempt's traceback", f"{conveyor} jobs show {first} {app}"),
        ("give the dead jobs another go", f"{conveyor} dlq retry --all {app}"),
        ("counts per queue and state, and the workers", f"{conveyor} status {app}"),
        ("run a worker for the demo app", f"{conveyor} worker {app} -q {','.join(QUEUES)}"),
        ("browse it all in the dashboard (needs the web extra)",
         f"{conveyor} web {app} --no-auth"),
    ]
    out.print()
    out.print("[bold]Next steps[/]")
    for what, command in steps:
        out.print(f"  [dim]# {what}[/]")
        # soft_wrap: a command stays on one line, so it can be copied as it is.
        out.print(f"  [cyan]{escape(prefix + command)}[/]", soft_wrap=True)


def invoked_as(argv0: str | None = None) -> str:
    """How this shell can run conveyor again: `conveyor` when that is on PATH and is
    this one, else the path it was started by (e.g. `.venv/bin/conveyor`)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if os.path.basename(argv0) != "conveyor" or not os.path.exists(argv0):
        return f"{shlex.quote(os.path.relpath(sys.executable))} -m conveyor"
    found = shutil.which("conveyor")
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return "conveyor"
    relative = os.path.relpath(argv0)
    shown = relative if not relative.startswith("..") else os.path.abspath(argv0)
    return shlex.quote(shown if os.sep in shown else f".{os.sep}{shown}")


def watch(
    app: Conveyor, total: int, *, thread: threading.Thread, failures: list[BaseException],
    started: float, db: Path, out: Console,
) -> list[JobRecord]:
    """Show the live table until every job is finished; returns the final records."""
    records = _read(app, total)
    try:
        with Live(live_view(records, total, 0.0), console=out, refresh_per_second=8) as live:
            while True:
                records = _read(app, total)
                elapsed = time.monotonic() - started
                live.update(live_view(records, total, elapsed))
                if len(records) >= total and all(r.state.finished for r in records):
                    return records
                if failures:
                    raise failures[0]
                if not thread.is_alive():
                    raise CliError("the demo's worker stopped before every job finished")
                if elapsed > DEADLINE:
                    raise CliError(
                        f"the demo did not finish within {DEADLINE:.0f}s; look with "
                        f"{DEMO_URL_ENV}=sqlite:///{db} conveyor status --app conveyor.demo:app"
                    )
                time.sleep(0.15)
    finally:
        if not out.is_terminal:
            out.line()  # a live display ends without a newline when not on a terminal


@click.command()
@click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_DB,
    show_default=True, help="SQLite file for the demo; deleted and created fresh at the start.",
)
@click.option(
    "--jobs", "job_count", type=click.IntRange(1, 5000), default=60, show_default=True,
    help="How many jobs to enqueue.",
)
@click.option(
    "--serve", is_flag=True,
    help="After the workload, keep the worker and the dashboard running until Ctrl-C.",
)
@click.pass_context
def demo(ctx: click.Context, db: Path, job_count: int, serve: bool) -> None:
    """Watch conveyor run, retry and dead-letter a workload. Nothing to set up."""
    configure_logging("warning")
    out = console()
    fresh_database(db)
    app = create_app(f"sqlite:///{db}")
    ctx.call_on_close(app.close)
    out.print(
        f"[bold]conveyor demo[/]: {job_count} jobs into [cyan]{escape(str(db))}[/], "
        "one worker with 8 threads. Ctrl-C stops it."
    )
    dashboard = DashboardThread(app)
    ctx.call_on_close(dashboard.stop)
    if dashboard.url:
        out.print(f"dashboard (while the demo runs): [cyan]{dashboard.url}[/]")
    worker = app.worker(queues=QUEUES, concurrency=8, grace=2.0, install_signals=False)
    failures: list[BaseException] = []
    thread = threading.Thread(
        target=_run_worker, args=(worker, failures), name="conveyor-demo-worker", daemon=True
    )
    started = time.monotonic()
    try:
        ids = enqueue_workload(app, job_count)
        thread.start()
        records = watch(
            app, len(ids), thread=thread, failures=failures, started=started, db=db, out=out
        )
    except KeyboardInterrupt:
        _stop(worker, thread)
        out.print(
            "[yellow]interrupted[/]: the worker stopped; unfinished jobs stay in "
            f"{escape(str(db))}"
        )
        ctx.exit(130)
    finally:
        _stop(worker, thread)
    out.print(f"all {len(ids)} jobs finished in {time.monotonic() - started:.1f}s")
    out.print()
    out.print(summary_table(records))
    explain(records, db, out)
    if serve:
        keep_serving(app, dashboard, out)


def keep_serving(app: Conveyor, dashboard: DashboardThread, out: Console) -> None:
    """Run a worker beside the dashboard until Ctrl-C, so retries pressed there run."""
    if not dashboard.url:
        out.print(
            "[yellow]--serve[/]: the dashboard needs the web extra "
            "(from a clone of conveyor: pip install -e '.[web]'); stopping here"
        )
        return
    worker = app.worker(queues=QUEUES, concurrency=8, grace=2.0, install_signals=False)
    failures: list[BaseException] = []
    thread = threading.Thread(
        target=_run_worker, args=(worker, failures), name="conveyor-demo-worker", daemon=True
    )
    thread.start()
    out.print()
    out.print(
        f"a worker and the dashboard keep running: [cyan]{dashboard.url}[/] "
        "(retry the dead jobs there and watch them run again). Ctrl-C to stop."
    )
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        _stop(worker, thread)
        out.print("stopped")
        return
    if failures:
        raise CliError(f"the demo worker stopped: {failures[0]}")


def _stop(worker: Worker, thread: threading.Thread) -> None:
    """Stop the worker; a second Ctrl-C while it drains stops it at once."""
    if not thread.is_alive():
        return
    worker.stop()
    try:
        thread.join(timeout=worker.grace + 5)
    except KeyboardInterrupt:
        worker.stop(graceful=False)
        thread.join(timeout=5)
