"""`conveyor annotate`, `conveyor events`, `conveyor incident ...` and `conveyor doctor`.

    conveyor annotate "deployed v1.4.2" --kind deploy      # into the event log, now
    conveyor events --since 1h --kind worker               # the operational event log
    conveyor incident open "payments failing"              # by hand (pages open their own)
    conveyor incident list | show ID | close ID | draft ID [--out DIR]
    conveyor doctor                    # every detector once; exit 1 when one fires
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from conveyor.backends.base import EventFilter
from conveyor.cli.audit import _since
from conveyor.cli.common import CliError, app_options, console, echo_json, open_app, operations
from conveyor.clock import format_duration
from conveyor.incidents.detectors import DETECTORS, DetectorResult, DetectorSettings

# The draft and the service (with the alert sinks and the SLO model they read) are
# imported when a command needs them: every `conveyor worker` imports this module.


def iso(at: float | None) -> str:
    from conveyor.incidents.draft import iso as iso_time

    return iso_time(at)


@click.command()
@click.argument("text")
@app_options
@click.option("--kind", default="", metavar="WORD",
              help="A family under annotation, e.g. deploy (stored as annotation.deploy).")
@click.option("--subject", default="", help="What it is about, e.g. the version deployed.")
def annotate(text: str, app_argument: str | None, app_option: str | None, kind: str,
             subject: str) -> None:
    """Write TEXT (e.g. "deployed v1.4.2") into the event log: incident drafts list it
    under what changed just before."""
    app, _ = open_app(app_argument, app_option)
    ops, actor, source = operations(app)
    ops.annotate(text, actor=actor, source=source, subject=subject,
                 kind=f"annotation.{kind}" if kind else "annotation")
    click.echo(f"annotated: {text}")


@click.command()
@app_options
@click.option("--since", metavar="WHEN", help="Only events since: 30m, 12h, 7d, or a time "
              "such as 2030-01-02T03:04 (UTC).")
@click.option("--kind", help="A kind (alert.fired) or a family (alert, worker, queue...).")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def events(*, app_argument: str | None, app_option: str | None, since: str | None,
           kind: str | None, limit: int, as_json: bool) -> None:
    """The operational event log, newest first: alerts, workers, queues, dead-letter
    actions, migrations, spool, annotations, incidents, and what features publish."""
    app, _ = open_app(app_argument, app_option)
    now = app.backend.now()
    found = app.incidents.events(EventFilter(since=_since(since, now), kind=kind, limit=limit))
    if as_json:
        from conveyor.incidents.service import event_json

        echo_json([{**event_json(e), "at_iso": iso(e.at)} for e in found])
        return
    out = console()
    if not found:
        out.print("[dim]no events match[/]")
        return
    table = Table(title=f"Events (newest first, {len(found)})", title_justify="left")
    for column in ("when (UTC)", "kind", "subject", "actor", "details"):
        table.add_column(column, overflow="fold")
    for e in found:
        table.add_row(iso(e.at), e.kind, e.subject, e.actor,
                      json.dumps(e.details, sort_keys=True)[:300] if e.details else "-")
    out.print(table)


@click.group()
def incident() -> None:
    """Incidents: opened by a page (or by hand), closed when it resolves; postmortem drafts."""


@incident.command("open")
@click.argument("title")
@app_options
def open_incident(title: str, app_argument: str | None, app_option: str | None) -> None:
    """Open an incident by hand, titled TITLE."""
    app, _ = open_app(app_argument, app_option)
    _, actor, _ = operations(app)
    incident_id = app.incidents.open(title, by=actor)
    click.echo(f"incident {incident_id} opened")


@incident.command("close")
@click.argument("incident_id", type=int)
@app_options
@click.option("--note", default="", help="What brought it back.")
def close_incident(incident_id: int, app_argument: str | None, app_option: str | None,
                   note: str) -> None:
    """Close incident INCIDENT_ID (pages close their own when they resolve)."""
    app, _ = open_app(app_argument, app_option)
    _, actor, _ = operations(app)
    closed = app.incidents.close(incident_id, by=actor, note=note)
    click.echo(f"incident {incident_id} closed" if closed
               else f"incident {incident_id} was already closed")


@incident.command("list")
@app_options
@click.option("--open", "open_only", is_flag=True, help="Only the open ones.")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_incidents(app_argument: str | None, app_option: str | None, open_only: bool,
                   limit: int, as_json: bool) -> None:
    """Incidents, newest first."""
    app, _ = open_app(app_argument, app_option)
    found = app.incidents.list_incidents(open_only=open_only, limit=limit)
    if as_json:
        from conveyor.incidents.service import incident_json

        echo_json([incident_json(i, app.incidents.url(i.id)) for i in found])
        return
    out = console()
    if not found:
        out.print("[dim]no incidents[/]")
        return
    now = app.backend.now()
    table = Table(title=f"Incidents ({len(found)})", title_justify="left")
    for column in ("id", "status", "opened (UTC)", "duration", "title", "opened by"):
        table.add_column(column, overflow="fold")
    for i in found:
        end = i.closed_at if i.closed_at is not None else now
        table.add_row(str(i.id), "resolved" if i.closed_at else "[bold red]open[/]",
                      iso(i.opened_at), format_duration(end - i.opened_at), i.title, i.opened_by)
    out.print(table)


@incident.command("show")
@click.argument("incident_id", type=int)
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_incident(incident_id: int, app_argument: str | None, app_option: str | None,
                  as_json: bool) -> None:
    """One incident and its timeline."""
    app, _ = open_app(app_argument, app_option)
    i = app.incidents.get(incident_id)
    draft = app.incidents.draft(incident_id)
    if as_json:
        from conveyor.incidents.service import incident_json

        echo_json({**incident_json(i, app.incidents.url(i.id)),
                   "timeline": draft.data["timeline"]})
        return
    out = console()
    out.print(f"[bold]incident {i.id}[/]: {i.title}")
    out.print(f"opened {iso(i.opened_at)} by {i.opened_by}; "
              + (f"resolved {iso(i.closed_at)}" if i.closed_at else "[bold red]open[/]"))
    for t in draft.data["timeline"]:
        out.print(f"  {iso(t['at'])}  {t['kind']:<18} {t['subject']}  {t['text']}",
                  markup=False)


@incident.command("draft")
@click.argument("incident_id", type=int)
@app_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(), show_default=True,
              help="Folder for incident-ID.md and incident-ID.json.")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the Markdown instead.")
def draft_incident(incident_id: int, app_argument: str | None, app_option: str | None,
                   out_dir: Path, to_stdout: bool) -> None:
    """Write the postmortem draft of INCIDENT_ID (Markdown and JSON)."""
    app, _ = open_app(app_argument, app_option)
    draft = app.incidents.draft(incident_id)
    if to_stdout:
        click.echo(draft.markdown, nl=False)
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        md = out_dir / f"incident-{incident_id}.md"
        js = out_dir / f"incident-{incident_id}.json"
        md.write_text(draft.markdown, encoding="utf-8")
        js.write_text(json.dumps(draft.data, indent=2), encoding="utf-8")
    except OSError as exc:
        raise CliError(
            f"cannot write the draft into {out_dir} ({exc}): choose another --out"
        ) from None
    click.echo(f"wrote {md} and {js}")


def detector_settings(interval: float | None) -> DetectorSettings:
    return DetectorSettings() if interval is None else DetectorSettings(
        interval=interval, dlq_interval=max(interval, 60.0), alive_within=max(interval, 60.0))


def print_detectors(results: list[DetectorResult]) -> None:
    out = console()
    table = Table(title="Silent-failure detectors", title_justify="left")
    for column in ("detector", "state", "what it saw"):
        table.add_column(column, overflow="fold")
    for r in results:
        if r.error:
            table.add_row(r.name, "[yellow]could not look[/]", r.error)
        elif r.findings:
            table.add_row(r.name, "[bold red]FIRING[/]",
                          "\n".join(f.message for f in r.findings))
        else:
            table.add_row(r.name, "[green]ok[/]", f"[dim]{r.about}: none[/]")
    out.print(table)


@click.command()
@app_options
@click.option("--interval", type=click.FloatRange(min=1), metavar="SECONDS",
              help="How far back each detector looks (default 60s; the dead-letter one 5m).")
@click.option("--only", multiple=True, type=click.Choice(sorted(DETECTORS)),
              help="Run only this detector (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(app_argument: str | None, app_option: str | None, interval: float | None,
           only: tuple[str, ...], as_json: bool) -> None:
    """Run every silent-failure detector once; exit 1 when one fires (2 when one could
    not look)."""
    app, _ = open_app(app_argument, app_option)
    results = app.incidents.detect(detector_settings(interval), only=only)
    if as_json:
        echo_json({"firing": [r.name for r in results if r.firing],
                   "detectors": [r.to_json() for r in results]})
    else:
        print_detectors(results)
    if any(r.firing for r in results):
        raise SystemExit(1)
    if any(r.error for r in results):
        raise SystemExit(2)


__all__ = ["annotate", "doctor", "events", "incident", "print_detectors"]
