"""`conveyor status`: jobs per queue and state, the oldest wait, and the live workers."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from conveyor.backends.base import QueueStats
from conveyor.cli.common import app_options, console, echo_json, open_app
from conveyor.cli.incidents import print_detectors
from conveyor.cli.limits import describe
from conveyor.clock import format_duration
from conveyor.incidents.detectors import DetectorSettings
from conveyor.insights import worker_json
from conveyor.operations import limit_json
from conveyor.types import JobState

STATE_COLUMNS = (
    JobState.AVAILABLE,
    JobState.SCHEDULED,
    JobState.RUNNING,
    JobState.SUCCEEDED,
    JobState.DEAD,
    JobState.CANCELLED,
)

STATE_STYLES = {
    JobState.AVAILABLE: "cyan",
    JobState.SCHEDULED: "blue",
    JobState.RUNNING: "yellow",
    JobState.SUCCEEDED: "green",
    JobState.DEAD: "red",
    JobState.CANCELLED: "dim",
}


def queue_json(stats: QueueStats) -> dict[str, Any]:
    return {
        "queue": stats.queue,
        "counts": {str(state): stats.counts.get(state, 0) for state in STATE_COLUMNS},
        "oldest_waiting_seconds": stats.oldest_available_age,
    }


@click.command()
@app_options
@click.option(
    "--alive-within", type=click.FloatRange(min=0), metavar="SECONDS",
    help="Count a worker as alive if it sent a heartbeat this recently "
    "(default: twice the app's lease, at least 60s).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(
    app_argument: str | None, app_option: str | None, alive_within: float | None, as_json: bool
) -> None:
    """Jobs per queue and state, how long the oldest ready job has waited, and the workers."""
    app, _ = open_app(app_argument, app_option)
    insights = app.insights
    queues = insights.queues()
    window = alive_within if alive_within is not None else insights.default_alive_within
    workers = insights.workers(window)
    now = insights.now()
    totals = {str(state): sum(q.counts.get(state, 0) for q in queues) for state in STATE_COLUMNS}
    limits = app.operations.list_limits()
    detectors = app.incidents.detect(DetectorSettings(alive_within=max(window, 0.001)))
    serving = {q.queue: sum(q.queue in w.queues for w in workers) for q in queues}
    if as_json:
        echo_json({
            "queues": [{**queue_json(q), "workers": serving[q.queue]} for q in queues],
            "detectors": [d.to_json() for d in detectors],
            "totals": totals,
            "limits": [limit_json(s) for s in limits],
            # last_heartbeat_age_seconds: the name this output had first, kept for scripts.
            "workers": [{**worker_json(w, now),
                         "last_heartbeat_age_seconds": max(0.0, now - w.last_heartbeat_at)}
                        for w in workers],
        })
        return

    out = console()
    table = Table(title="Queues", title_justify="left")
    table.add_column("queue", style="bold")
    for state in STATE_COLUMNS:
        table.add_column(str(state), justify="right", style=STATE_STYLES[state])
    table.add_column("oldest waiting", justify="right")
    table.add_column("workers", justify="right")
    for q in queues:
        # A queue with due jobs and nobody serving it is not "running": say so.
        unserved = serving[q.queue] == 0 and q.counts.get(JobState.AVAILABLE, 0) > 0
        table.add_row(
            q.queue,
            *(str(q.counts.get(state, 0)) for state in STATE_COLUMNS),
            format_duration(q.oldest_available_age),
            "[bold red]none[/]" if unserved else str(serving[q.queue]),
        )
    if len(queues) > 1:
        table.add_section()
        oldest = [q.oldest_available_age for q in queues if q.oldest_available_age is not None]
        table.add_row(
            "total", *(str(totals[str(s)]) for s in STATE_COLUMNS),
            format_duration(max(oldest) if oldest else None), str(len(workers)), style="bold",
        )
    if queues:
        out.print(table)
    else:
        out.print("[dim]no jobs yet[/]")
    # Why jobs wait: each limit that holds some back (docs/flow-control.md).
    for s in limits:
        if s.waiting or s.paused_for > 0:
            paused = (f", paused {s.paused_for:.0f}s more"
                      + (f" ({s.paused_reason})" if s.paused_reason else "")
                      if s.paused_for > 0 else "")
            out.print(f"{s.waiting:,} job(s) waiting for limit [bold]{s.name}[/]: "
                      f"{describe(s)}, {s.running} running{paused}", soft_wrap=True)

    out.print()
    print_detectors(detectors)
    out.print()
    if not workers:
        out.print(f"[dim]no workers alive (none sent a heartbeat in the last "
                  f"{format_duration(window)})[/]")
        return
    wtable = Table(title=f"Workers alive: {len(workers)}", title_justify="left")
    wtable.add_column("id", style="bold", overflow="fold")
    wtable.add_column("queues")
    wtable.add_column("concurrency", justify="right")
    wtable.add_column("running", justify="right")
    wtable.add_column("last heartbeat", justify="right")
    for w in workers:
        wtable.add_row(
            w.id, ",".join(w.queues), str(w.concurrency), str(w.running),
            f"{format_duration(now - w.last_heartbeat_at)} ago",
        )
    out.print(wtable)
