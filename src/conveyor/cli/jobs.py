"""`conveyor jobs show|list|cancel|signal|steps`: one job in full, a filtered list, and
the actions on one job."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from conveyor.backends.base import JobFilter
from conveyor.cli.common import (
    CliError,
    app_options,
    console,
    echo_json,
    format_time,
    one_line,
    open_app,
    operations,
    short_type,
    to_jsonable,
)
from conveyor.cli.status import STATE_STYLES
from conveyor.clock import format_duration
from conveyor.operations import steps_json
from conveyor.redaction import shown_record
from conveyor.types import JobRecord, JobState

STATE_CHOICE = click.Choice([str(s) for s in JobState], case_sensitive=False)


def last_error(record: JobRecord) -> str:
    if not record.errors:
        return "-"
    error = record.errors[-1]
    return f"{short_type(error.type)}: {error.message}"


def record_json(record: JobRecord) -> dict[str, Any]:
    data: dict[str, Any] = to_jsonable(shown_record(record))
    return data


def _state(state: JobState) -> Text:
    return Text(str(state), style=STATE_STYLES.get(state, ""))


def render_job(record: JobRecord, now: float) -> Group:
    record = shown_record(record)
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column(overflow="fold")
    run_time = None
    if record.started_at and record.finished_at:
        run_time = (record.finished_at - record.started_at).total_seconds()
    rows: list[tuple[str, str | Text]] = [
        ("id", str(record.id)),
        ("task", record.task),
        ("queue", record.queue),
        ("state", _state(record.state)),
        ("attempt", f"{record.attempt} of {record.max_attempts}"),
        ("priority", f"{record.priority} (0 is most urgent)"),
        ("args", json.dumps(record.args, ensure_ascii=False)),
        ("kwargs", json.dumps(record.kwargs, ensure_ascii=False)),
        ("result", "-" if record.result is None else json.dumps(record.result,
                                                                 ensure_ascii=False)),
        ("created", format_time(record.created_at, now)),
        ("run at", format_time(record.run_at, now)),
        ("started", format_time(record.started_at, now)),
        ("finished", format_time(record.finished_at, now)),
        ("last run time", format_duration(run_time)),
        ("timeout", "-" if record.timeout is None else format_duration(record.timeout)),
        ("idempotency key", record.idempotency_key or "-"),
        ("group", record.group_key or "-"),
        ("tags", ", ".join(record.tags) or "-"),
        ("lease owner", record.lease_owner or "-"),
        ("lease expires", format_time(record.lease_expires_at, now)),
        ("lease token", str(record.lease_token)),
    ]
    for name, value in rows:
        fields.add_row(name, value if isinstance(value, Text) else Text(value))
    parts: list[Any] = [Panel(fields, title=f"job {record.id}", title_align="left", expand=False)]
    if not record.errors:
        parts.append(Text("no failed attempts", style="dim"))
    for error in record.errors:
        title = f"attempt {error.attempt}: [bold red]{escape(short_type(error.type))}[/]"
        where = Text(f"worker {error.worker or '-'}, {format_time(error.at, now)}", style="dim")
        # A control signal (RetryAfter, Discard) or a lost lease has no traceback: say why.
        body = Text(error.traceback.rstrip() or error.message)
        parts.append(Panel(Group(where, body), title=title, title_align="left",
                           border_style="red", expand=False))
    return Group(*parts)


def jobs_table(records: list[JobRecord], now: float, *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("id", justify="right", style="bold")
    table.add_column("task")
    table.add_column("queue")
    table.add_column("state")
    table.add_column("attempt", justify="right")
    table.add_column("created")
    table.add_column("last error", no_wrap=True, overflow="ellipsis")
    for r in records:
        table.add_row(
            str(r.id), r.task, r.queue, _state(r.state), f"{r.attempt}/{r.max_attempts}",
            f"{format_duration(now - r.created_at.timestamp())} ago",
            one_line(last_error(r)),
        )
    return table


@click.group()
def jobs() -> None:
    """Look at jobs: one in full, or a filtered list."""


@jobs.command()
@click.argument("job_id", metavar="ID", type=int)
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(job_id: int, app_argument: str | None, app_option: str | None, as_json: bool) -> None:
    """Every field of job ID, its arguments and result, and each failed attempt's traceback."""
    app, _ = open_app(app_argument, app_option)
    record = app.operations.get_job(job_id)
    if record is None:
        raise CliError(f"job {job_id} does not exist (never enqueued, or pruned after retention)")
    if as_json:
        echo_json(record_json(record))
        return
    console().print(render_job(record, app.backend.now()))


@jobs.command(name="list")
@app_options
@click.option("--state", "states", type=STATE_CHOICE, multiple=True,
              help="Only jobs in this state (repeatable).")
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--task", help="Only jobs of this task.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_jobs(
    *,
    app_argument: str | None,
    app_option: str | None,
    states: tuple[str, ...],
    queue: str | None,
    task: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest jobs first, filtered by state, queue and task."""
    app, _ = open_app(app_argument, app_option)
    records = app.operations.list_jobs(
        JobFilter(states=[JobState(s.lower()) for s in states], queue=queue, task=task,
                  limit=limit)
    )
    if as_json:
        echo_json([record_json(r) for r in records])
        return
    out = console()
    if not records:
        out.print("[dim]no jobs match[/]")
        return
    out.print(jobs_table(records, app.backend.now(), title=f"Jobs (newest first, {len(records)})"))


@jobs.command()
@click.argument("job_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--grace", type=click.FloatRange(min=0, max=86400), metavar="SECONDS",
              help="A running job's time to stop by itself before it is stopped hard "
                   "(default 10).")
@app_options
def cancel(
    job_id: int, grace: float | None, app_argument: str | None, app_option: str | None
) -> None:
    """Cancel job ID: at once if it has not started or waits (ctx.sleep, ctx.wait_for);
    a running job is asked to stop (ctx.cancelled) and stopped hard after the grace."""
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    before = ops.get_job(job_id)
    if ops.cancel(job_id, actor=actor, source=source, grace=grace):
        if before is not None and before.state is JobState.RUNNING:
            click.echo(f"job {job_id} is running: asked to stop; it is cancelled when it "
                       f"stops, or hard after {10.0 if grace is None else grace:g}s")
        else:
            click.echo(f"job {job_id} cancelled")
        return
    record = ops.get_job(job_id)
    if record is None:
        raise CliError(f"job {job_id} does not exist (never enqueued, or pruned after retention)")
    raise CliError(f"job {job_id} is {record.state}: a finished job cannot be cancelled")


@jobs.command()
@click.argument("job_id", metavar="ID", type=click.IntRange(min=1))
@click.argument("name")
@click.argument("payload", required=False, default="null")
@app_options
def signal(
    job_id: int, name: str, payload: str, app_argument: str | None, app_option: str | None
) -> None:
    """Send signal NAME with a JSON PAYLOAD (default null) to job ID, which waits for it in
    ctx.wait_for(NAME)."""
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise CliError(f"PAYLOAD must be JSON ({exc}); quote text: '\"yes\"'") from None
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    outcome = ops.signal(job_id, name, value, actor=actor, source=source)
    click.echo(f"job {job_id}: signal {name!r} {outcome}")


@jobs.command()
@click.argument("job_id", metavar="ID", type=click.IntRange(min=1))
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def steps(job_id: int, app_argument: str | None, app_option: str | None, as_json: bool) -> None:
    """Job ID's progress, metadata and durable steps (results, tries, timing)."""
    app, _ = open_app(app_argument, app_option)
    context, found = app.operations.job_steps(job_id)
    data = steps_json(context, found)
    if as_json:
        echo_json(data)
        return
    out = console()
    progress = data["progress"]
    if progress["fraction"] is not None:
        out.print(f"progress {progress['fraction']:.0%} {escape(progress['message'] or '')}")
    if data["cancel_requested_at"] is not None:
        out.print("[yellow]cancel requested[/]")
    table = Table(title=f"Steps of job {job_id} ({len(found)})", title_justify="left")
    for column in ("name", "status", "attempt", "tries", "took", "result"):
        table.add_column(column)
    for step in data["steps"]:
        took = "-" if step["took"] is None else format_duration(step["took"])
        table.add_row(escape(step["name"]), step["status"], str(step["attempt"]),
                      str(step["tries"]), took, one_line(json.dumps(step["result"]))[:80])
    out.print(table)

