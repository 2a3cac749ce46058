"""`conveyor workflow show|list|cancel`: a workflow's nodes and their states."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from conveyor.cli.common import CliError, app_options, console, echo_json, open_app, operations
from conveyor.cli.status import STATE_STYLES
from conveyor.clock import format_duration, to_datetime
from conveyor.operations import WorkflowView
from conveyor.types import JobState


@click.group()
def workflow() -> None:
    """Workflows (chains, groups, chords, DAGs, batches): show, list, cancel."""


def _state(state: str) -> Text:
    known = {str(s) for s in JobState}
    style = STATE_STYLES.get(JobState(state), "") if state in known else "dim"
    return Text(state, style=style)


def render_workflow(view: WorkflowView) -> Table:
    parents: dict[int, list[int]] = {}
    for edge in view.edges:
        parents.setdefault(edge.child_id, []).append(edge.parent_id)
    record = view.workflow
    progress = ", ".join(f"{count} {state}" for state, count in sorted(view.counts().items()))
    title = (f"Workflow {record.id} {escape(record.name)} "
             f"({len(view.nodes)} nodes: {progress})"
             + (" [cancelled]" if record.cancelled_at is not None else ""))
    table = Table(title=title, title_justify="left")
    for column in ("job", "name", "task", "state", "after", "runs when", "attempt", "ran"):
        table.add_column(column)
    for node in view.nodes:
        ran = (format_duration(node.finished_at - node.started_at)
               if node.started_at is not None and node.finished_at is not None else "-")
        after = ", ".join(str(p) for p in parents.get(node.job_id, [])) or "-"
        waiting = f" (waits for {node.waiting})" if node.pending else ""
        table.add_row(str(node.job_id), escape(node.name), escape(node.task),
                      _state(view.node_state(node)) + waiting, after, node.runs_when,
                      f"{node.attempt}/{node.max_attempts}", ran)
    return table


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(workflow_id: str, app_argument: str | None, app_option: str | None,
         as_json: bool) -> None:
    """Every node of workflow ID with its state, what it waits for, and progress counts."""
    app, _ = open_app(app_argument, app_option)
    view = app.operations.get_workflow(workflow_id)
    if view is None:
        raise CliError(f"workflow {workflow_id} does not exist (never enqueued, or another "
                       "database): `conveyor workflow list` shows the newest")
    if as_json:
        echo_json(view.to_json())
        return
    console().print(render_workflow(view))


@workflow.command(name="list")
@app_options
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_workflows(app_argument: str | None, app_option: str | None, limit: int,
                   as_json: bool) -> None:
    """The newest workflows first."""
    app, _ = open_app(app_argument, app_option)
    found = app.operations.list_workflows(limit)
    if as_json:
        echo_json([{"id": w.id, "name": w.name, "created_at": w.created_at,
                    "cancelled_at": w.cancelled_at} for w in found])
        return
    table = Table(title=f"Workflows (newest first, {len(found)})", title_justify="left")
    for column in ("id", "name", "created", "cancelled"):
        table.add_column(column)
    for w in found:
        table.add_row(w.id, escape(w.name), f"{to_datetime(w.created_at):%Y-%m-%d %H:%M:%S}",
                      "-" if w.cancelled_at is None
                      else f"{to_datetime(w.cancelled_at):%Y-%m-%d %H:%M:%S}")
    console().print(table)


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@app_options
def cancel(workflow_id: str, app_argument: str | None, app_option: str | None) -> None:
    """Cancel every node of workflow ID that has not started: none of them starts after.
    Running nodes finish."""
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    cancelled = ops.cancel_workflow(workflow_id, actor=actor, source=source)
    if cancelled is None:
        raise CliError(f"workflow {workflow_id} does not exist")
    click.echo(f"workflow {workflow_id}: {cancelled} node(s) cancelled")
