"""`conveyor dlq list|retry|purge`: the dead-letter queue (jobs in state `dead`).

Bulk actions (`retry --all`, `purge`) say how many jobs they will touch and
ask first; `--yes` skips the question (scripts, CI). Without a terminal to
answer on, the question fails closed: nothing is changed.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from conveyor.backends.base import JobFilter
from conveyor.cli.common import (
    BULK,
    CliError,
    app_options,
    console,
    echo_json,
    format_time,
    one_line,
    open_app,
    operations,
)
from conveyor.cli.jobs import last_error
from conveyor.operations import Operations
from conveyor.redaction import shown_record
from conveyor.types import JobRecord, JobState

DEAD = [JobState.DEAD]
COUNT_CAP = 100_000
"""Counting stops here for confirmation prompts ("100000+ jobs")."""


def dead_json(record: JobRecord) -> dict[str, Any]:
    shown = shown_record(record)
    last = record.errors[-1] if record.errors else None
    return {
        "id": record.id,
        "task": record.task,
        "queue": record.queue,
        "attempts": record.attempt,
        "max_attempts": record.max_attempts,
        "last_error": None if last is None else {
            "type": last.type, "message": last.message, "worker": last.worker,
            "at": last.at.isoformat(),
        },
        "finished_at": None if record.finished_at is None else record.finished_at.isoformat(),
        "args": shown.args,
        "kwargs": shown.kwargs,
    }


def describe_filter(task: str | None, queue: str | None) -> str:
    parts = []
    if task:
        parts.append(f"task={task}")
    if queue:
        parts.append(f"queue={queue}")
    return f" ({', '.join(parts)})" if parts else ""


def count_dead(ops: Operations, task: str | None, queue: str | None) -> tuple[int, str]:
    found = len(ops.list_jobs(
        JobFilter(states=DEAD, task=task, queue=queue, limit=COUNT_CAP + 1)
    ))
    return found, (f"{COUNT_CAP}+" if found > COUNT_CAP else str(found))


@click.group()
def dlq() -> None:
    """The dead-letter queue: jobs that failed for good, kept until retried or purged."""


@dlq.command(name="list")
@app_options
@click.option("--task", help="Only dead jobs of this task.")
@click.option("--queue", help="Only dead jobs of this queue.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_dead(
    *,
    app_argument: str | None,
    app_option: str | None,
    task: str | None,
    queue: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Dead jobs, newest first, with their last error."""
    app, _ = open_app(app_argument, app_option)
    records = app.operations.list_jobs(
        JobFilter(states=DEAD, task=task, queue=queue, limit=limit)
    )
    if as_json:
        echo_json([dead_json(r) for r in records])
        return
    out = console()
    if not records:
        out.print(f"[green]the dead-letter queue is empty{describe_filter(task, queue)}[/]")
        return
    now = app.backend.now()
    table = Table(title=f"Dead jobs{describe_filter(task, queue)}: {len(records)} shown",
                  title_justify="left")
    table.add_column("id", justify="right", style="bold")
    table.add_column("task")
    table.add_column("queue")
    table.add_column("attempts", justify="right")
    table.add_column("last error", style="red", overflow="fold")
    table.add_column("finished")
    for r in records:
        table.add_row(
            str(r.id), r.task, r.queue, f"{r.attempt}/{r.max_attempts}",
            one_line(last_error(r), 100), format_time(r.finished_at, now),
        )
    out.print(table)
    out.print(
        "[dim]`conveyor jobs show ID` shows every attempt's traceback; "
        "`conveyor dlq retry ID` runs a job again.[/]"
    )


@dlq.command()
@click.argument("targets", nargs=-1, metavar="[APP] [ID]...")
@click.option("-A", "--app", "app_option", metavar="MODULE:ATTR",
              help="The Conveyor app, e.g. myapp.tasks:app (default: $CONVEYOR_APP).")
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead job matching the filters.")
@click.option("--task", help="Only dead jobs of this task.")
@click.option("--queue", help="Only dead jobs of this queue.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def retry(
    *,
    targets: tuple[str, ...],
    app_option: str | None,
    retry_all: bool,
    task: str | None,
    queue: str | None,
    yes: bool,
) -> None:
    """Move dead jobs back to available, with a fresh set of attempts.

    Name the jobs by ID, or use --all (with --task/--queue to narrow it down).
    Their error history is kept.
    """
    ids: list[int] = []
    app_argument: str | None = None
    for target in targets:
        if target.isdigit():
            ids.append(int(target))
        elif app_argument is None:
            app_argument = target
        else:
            raise CliError(f"{target!r} is not a job id (and the app is already {app_argument!r})")
    if ids and retry_all:
        raise CliError("give job IDs or --all, not both")
    if not ids and not retry_all:
        raise CliError(
            "name the dead jobs to retry: conveyor dlq retry ID [ID...], or --all "
            "(with --task/--queue to narrow it down)"
        )
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    out = console()
    if retry_all:
        found, shown = count_dead(ops, task, queue)
        if not found:
            out.print(f"no dead jobs match{describe_filter(task, queue)}: nothing to retry")
            return
        if not yes:
            confirm(f"Retry {shown} dead job(s){describe_filter(task, queue)}?", "retry")
        retried = ops.retry(JobFilter(task=task, queue=queue, limit=BULK), actor=actor,
                            source=source)
        out.print(f"retried {retried} dead job(s): they are available again")
        return
    dead_now = {
        r.id for r in ops.list_jobs(
            JobFilter(ids=ids, states=DEAD, task=task, queue=queue, limit=len(ids))
        )
    }
    retried = ops.retry(JobFilter(ids=ids, task=task, queue=queue, limit=len(ids)),
                        actor=actor, source=source)
    out.print(f"retried {retried} dead job(s): they are available again")
    skipped = [i for i in ids if i not in dead_now]
    if skipped:
        listed = ", ".join(str(i) for i in skipped)
        raise CliError(
            f"job(s) {listed} not retried: not dead{describe_filter(task, queue)}, or no such job "
            "(see `conveyor jobs show ID`)"
        )


def confirm(question: str, action: str) -> None:
    """Ask; with no answer to read (no terminal), refuse and name --yes, not "Aborted!"."""
    try:
        answered = click.confirm(question)
    except click.Abort:
        raise CliError(
            f"no answer to the question (is there a terminal?), so nothing was done: pass "
            f"--yes to {action} without asking"
        ) from None
    if not answered:
        raise CliError(f"nothing was done; pass --yes to {action} without asking")


@dlq.command()
@app_options
@click.option("--task", help="Only dead jobs of this task.")
@click.option("--queue", help="Only dead jobs of this queue.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge(
    app_argument: str | None, app_option: str | None, task: str | None, queue: str | None,
    yes: bool,
) -> None:
    """Delete dead jobs for good (all of them, or those of --task/--queue)."""
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    out = console()
    found, shown = count_dead(ops, task, queue)
    if not found:
        out.print(f"no dead jobs match{describe_filter(task, queue)}: nothing to purge")
        return
    if not yes:
        confirm(
            f"Delete {shown} dead job(s){describe_filter(task, queue)} for good? "
            "This cannot be undone", "purge",
        )
    deleted = ops.purge(JobFilter(states=DEAD, task=task, queue=queue, limit=BULK),
                        actor=actor, source=source)
    out.print(f"deleted {deleted} dead job(s)")
