"""`conveyor audit`: the audit log (who retried, cancelled, purged, paused, managed tokens),
and `conveyor queues pause|resume`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import click
from rich.table import Table

from conveyor.backends.base import AuditFilter
from conveyor.cli.common import CliError, app_options, console, echo_json, open_app, operations
from conveyor.clock import format_duration

AUDIT_LIMIT_MAX = 10_000
_AGO = re.compile(r"^(\d{1,9})(s|m|h|d|w)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _since(text: str | None, now: float) -> float | None:
    """`--since`: a duration back from now (30m, 12h, 7d) or an ISO 8601 time (UTC if naive)."""
    if text is None:
        return None
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return now - int(ago.group(1)) * _UNIT[ago.group(2)]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--since {text!r} is neither a duration (30m, 12h, 7d) nor a time "
            "(2030-01-02T03:04)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@click.command()
@app_options
@click.option("--since", metavar="WHEN", help="Only entries since: 30m, 12h, 7d, or a time "
              "such as 2030-01-02T03:04 (UTC).")
@click.option("--actor", help="Only entries whose actor contains this text (e.g. a token name).")
@click.option("--action", help="Only this action, e.g. job.retry, queue.pause, token.create.")
@click.option("--limit", type=click.IntRange(min=1, max=AUDIT_LIMIT_MAX), default=50,
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit(
    *,
    app_argument: str | None,
    app_option: str | None,
    since: str | None,
    actor: str | None,
    action: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Who did what to jobs, queues and tokens, when and from where (newest first)."""
    app, _ = open_app(app_argument, app_option)
    now = app.backend.now()
    entries = app.operations.audit(
        AuditFilter(since=_since(since, now), actor=actor, action=action, limit=limit)
    )
    if as_json:
        echo_json([
            {"id": e.id, "at": datetime.fromtimestamp(e.at, UTC).isoformat(),
             "actor": e.actor, "source": e.source, "action": e.action, "target": e.target,
             "count": e.count, "params": e.params}
            for e in entries
        ])
        return
    out = console()
    if not entries:
        out.print("[dim]no audit entries match[/]")
        return
    table = Table(title=f"Audit log (newest first, {len(entries)})", title_justify="left")
    for column in ("when (UTC)", "actor", "source", "action", "target", "count", "parameters"):
        table.add_column(column, overflow="fold")
    for e in entries:
        stamp = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            f"{stamp} ({format_duration(now - e.at)} ago)", e.actor, e.source, e.action,
            e.target, str(e.count), json.dumps(e.params, sort_keys=True) if e.params else "-",
        )
    out.print(table)


@click.group()
def queues() -> None:
    """Pause and resume queues (workers fetch nothing from a paused queue)."""


@queues.command()
@click.argument("queue")
@app_options
def pause(queue: str, app_argument: str | None, app_option: str | None) -> None:
    """Stop workers fetching from QUEUE; running jobs finish, new jobs wait."""
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    changed = ops.pause_queue(queue, actor=actor, source=source)
    click.echo(f"queue {queue} paused" if changed else f"queue {queue} was already paused")


@queues.command()
@click.argument("queue")
@app_options
def resume(queue: str, app_argument: str | None, app_option: str | None) -> None:
    """Let workers fetch from QUEUE again."""
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    changed = ops.resume_queue(queue, actor=actor, source=source)
    click.echo(f"queue {queue} resumed" if changed else f"queue {queue} was not paused")
