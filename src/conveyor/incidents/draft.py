"""The postmortem draft of one incident (`conveyor incident draft ID`), as JSON and Markdown.

Built only from what the database kept: the incident, the durable event log,
the per-minute aggregates, the error history of the jobs and the audit log.

- The outage's start is the first error of the run of failing minutes that led
  to the page (minutes without traffic neither extend nor break the run), read
  to the second from the jobs' error history.
- Impact counts the attempts of the objective's task (or queue, or every task
  of a hand-opened incident) from that start to the close: failed, dead, and
  delayed past the objective's wait target (60 s without one), with the wait
  percentiles as the aggregates' buckets bound them.
- Budget spent is the dead attempts of the incident against the errors the
  objective allows over its whole window ((1 - target) x attempts).
- What changed just before is the hour before the start: annotations, deploys,
  configuration and limit changes from the event log, and the audit log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from conveyor.backends.base import (
    WAIT_BUCKETS,
    AuditEntry,
    AuditFilter,
    ErrorSummary,
    EventEntry,
    EventFilter,
    IncidentRecord,
    JobStats,
    StatsQuery,
)
from conveyor.observability.slo import Objective

LOOKBACK = 6 * 3600.0
"""How far before the page the first errors are looked for."""
CHANGES_BEFORE = 3600.0
"""The window before the start in which changes are listed."""
RUN_GAP = 120.0
"""Healthy seconds that end a run of failing minutes."""
DEFAULT_WAIT_TARGET = 60.0
CHANGE_KINDS = ("annotation", "deploy", "config", "limit", "schema", "breaker", "queue")
RECOVERY_KINDS = ("annotation", "deploy", "config", "limit", "breaker", "queue", "dlq",
                  "worker")


class DraftBackend(Protocol):
    def stats_read(self, query: StatsQuery) -> list[JobStats]: ...
    def error_summary(self, since: float, until: float, limit: int = 10) -> list[ErrorSummary]: ...
    def event_list(self, filter: EventFilter) -> list[EventEntry]: ...
    def audit_list(self, filter: AuditFilter) -> list[AuditEntry]: ...


def iso(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _percentile(wait_le: Sequence[int], total: int, q: float) -> str:
    if total <= 0:
        return "-"
    need = math.ceil(q * total)
    for bound, count in zip(WAIT_BUCKETS, wait_le, strict=False):
        if count >= need:
            return f"<= {bound:g}s"
    return f"> {WAIT_BUCKETS[-1]:g}s"


def _sum(rows: Sequence[JobStats]) -> dict[str, Any]:
    wait_le = [0] * len(WAIT_BUCKETS)
    out = {"attempts": 0, "succeeded": 0, "retried": 0, "dead": 0}
    for row in rows:
        out["attempts"] += row.attempts
        out["succeeded"] += row.succeeded
        out["retried"] += row.retried
        out["dead"] += row.dead
        for i, count in enumerate(row.wait_le):
            wait_le[i] += count
    return {**out, "wait_le": wait_le}


def _outage_start(minutes: Sequence[JobStats], page_at: float) -> float | None:
    """The first failing minute of the run that reaches the page."""
    failing = sorted({r.minute for r in minutes
                      if r.minute is not None and r.retried + r.dead > 0 and r.minute <= page_at})
    healthy = sorted({r.minute for r in minutes if r.minute is not None
                      and r.retried + r.dead == 0 and r.attempts > 0})
    if not failing:
        return None
    start = failing[-1]
    for minute in reversed(failing[:-1]):
        between = [h for h in healthy if minute < h < start]
        if between and (start - minute) > RUN_GAP:
            break
        start = minute
    return start


def build_draft(
    backend: DraftBackend,
    incident: IncidentRecord,
    objectives: Mapping[str, Objective],
    now: float,
) -> dict[str, Any]:
    """Everything the postmortem says, as JSON-ready data."""
    opened, closed = incident.opened_at, incident.closed_at
    end = closed if closed is not None else now
    details = incident.details
    objective = objectives.get(str(details.get("objective") or ""))
    task = objective.task if objective else details.get("task")
    queue = objective.queue if objective else details.get("queue")
    task = str(task) if task else None
    queue = str(queue) if queue else None

    # Detection: the run of failing minutes that led to the page.
    minutes = backend.stats_read(StatsQuery(
        since=opened - LOOKBACK, until=end + 60, task=task, queue=queue, per_minute=True))
    per_minute: dict[float, dict[str, int]] = {}
    for row in minutes:
        if row.minute is None:
            continue
        m = per_minute.setdefault(row.minute, {"attempts": 0, "failed": 0, "dead": 0})
        m["attempts"] += row.attempts
        m["failed"] += row.retried + row.dead
        m["dead"] += row.dead
    start_minute = _outage_start(minutes, opened)
    start = start_minute if start_minute is not None else opened
    errors_all = backend.error_summary(start, end + 60, limit=50)
    errors = [e for e in errors_all if task is None or task in e.tasks] or errors_all
    first_error = min((e.first_at for e in errors), default=None)
    last_error = max((e.last_at for e in errors), default=None)
    if first_error is not None and start_minute is not None:
        start = min(max(first_error, start_minute), opened)

    # Impact, from the start to the close.
    impact_rows = backend.stats_read(StatsQuery(since=math.floor(start / 60) * 60,
                                                until=end + 60, task=task, queue=queue))
    totals = _sum(impact_rows)
    target = objective.wait_p99 if objective and objective.wait_p99 else DEFAULT_WAIT_TARGET
    index = next((i for i, b in enumerate(WAIT_BUCKETS) if b >= target), len(WAIT_BUCKETS) - 1)
    delayed = max(0, totals["attempts"] - totals["wait_le"][index])
    affected: list[dict[str, Any]] = [
        {"queue": r.queue, "task": r.task, "failed": r.retried + r.dead, "dead": r.dead,
         "attempts": r.attempts}
        for r in sorted(impact_rows, key=lambda r: -(r.retried + r.dead))
        if r.retried + r.dead > 0
    ]
    budget: dict[str, Any] = {}
    if objective is not None and objective.success is not None:
        window = backend.stats_read(StatsQuery(since=end - objective.window, until=end + 60,
                                               task=task, queue=queue))
        window_attempts = sum(r.succeeded + r.dead for r in window)
        allowed = (1.0 - objective.success) * window_attempts
        spent = totals["dead"] / allowed if allowed > 0 else None
        budget = {"objective": objective.name, "target": objective.success,
                  "window": objective.window, "bad": totals["dead"],
                  "allowed": round(allowed, 3), "spent": spent,
                  "left_at_open": details.get("budget_left"),
                  "left_at_close": incident.close_details.get("budget_left")}

    # Timeline: the event log and the per-minute aggregates, merged.
    events = backend.event_list(EventFilter(since=start - CHANGES_BEFORE, until=end + 300,
                                            limit=2000))
    timeline: list[dict[str, Any]] = []
    for e in events:
        if e.at < start - 900 and not e.kind.startswith(CHANGE_KINDS):
            continue
        timeline.append({"at": e.at, "source": "event", "kind": e.kind, "subject": e.subject,
                         "actor": e.actor, "text": _event_text(e)})
    for minute, m in sorted(per_minute.items()):
        if start - 120 <= minute <= end and (m["failed"] or minute in (
                math.floor(start / 60) * 60, math.floor(end / 60) * 60)):
            timeline.append({"at": minute, "source": "aggregates", "kind": "minute",
                             "subject": task or queue or "all tasks",
                             "actor": "", "text": f"{m['attempts']} attempts finished, "
                             f"{m['failed']} failed, {m['dead']} dead"})
    if first_error is not None:
        timeline.append({"at": first_error, "source": "errors", "kind": "errors.first",
                         "subject": errors[0].type if errors else "", "actor": "",
                         "text": "first error of the outage"})
    if last_error is not None:
        timeline.append({"at": last_error, "source": "errors", "kind": "errors.last",
                         "subject": "", "actor": "", "text": "last error of the outage"})
    logged = {(e.kind, e.subject) for e in events}
    if ("incident.opened", f"incident:{incident.id}") not in logged:
        timeline.append({"at": opened, "source": "incident", "kind": "incident.opened",
                         "subject": f"incident:{incident.id}", "actor": incident.opened_by,
                         "text": incident.title})
    if closed is not None and ("incident.closed", f"incident:{incident.id}") not in logged:
        timeline.append({"at": closed, "source": "incident", "kind": "incident.closed",
                         "subject": f"incident:{incident.id}", "actor": incident.closed_by or "",
                         "text": "resolved"})
    timeline.sort(key=lambda t: (t["at"], t["source"] != "aggregates"))

    changes: list[dict[str, Any]] = [
        {"at": e.at, "kind": e.kind, "subject": e.subject, "actor": e.actor,
         "text": _event_text(e)}
        for e in reversed(events)
        if start - CHANGES_BEFORE <= e.at <= start + 60 and e.kind.startswith(CHANGE_KINDS)
    ]
    for entry in backend.audit_list(AuditFilter(since=start - CHANGES_BEFORE, until=start + 60,
                                                limit=100)):
        changes.append({"at": entry.at, "kind": f"audit.{entry.action}",
                        "subject": entry.target, "actor": entry.actor,
                        "text": f"{entry.action} {entry.target} ({entry.count})".strip()})
    changes.sort(key=lambda c: c["at"])
    recovered_at = (last_error + 1.0) if last_error is not None else closed
    recovery = [
        {"at": e.at, "kind": e.kind, "subject": e.subject, "actor": e.actor,
         "text": _event_text(e)}
        for e in reversed(events)
        if (last_error or start) - 120 <= e.at <= end and e.kind.startswith(RECOVERY_KINDS)
    ]
    return {
        "incident": {"id": incident.id, "title": incident.title, "opened_at": opened,
                     "closed_at": closed, "opened_by": incident.opened_by,
                     "closed_by": incident.closed_by, "alert": incident.alert_key,
                     "status": "resolved" if closed is not None else "open"},
        "summary": {
            "started_at": start, "paged_at": opened if incident.alert_key else None,
            "recovered_at": recovered_at, "resolved_at": closed,
            "duration": (end - start),
            "top_error": ({"type": errors[0].type, "count": errors[0].count}
                          if errors else None),
        },
        "impact": {
            "attempts": totals["attempts"], "failed": totals["retried"] + totals["dead"],
            "dead": totals["dead"], "delayed": delayed, "wait_target": target,
            "wait": {q: _percentile(totals["wait_le"], totals["attempts"], p)
                     for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
            "budget": budget,
            "affected": affected,
            "tasks": sorted({str(a["task"]) for a in affected}),
            "queues": sorted({str(a["queue"]) for a in affected}),
        },
        "detection": {"first_error_at": first_error, "paged_at": opened,
                      "time_to_page": (opened - first_error) if first_error else None,
                      "alert": details.get("windows"), "burn_rates": details.get("burn_rates")},
        "timeline": timeline,
        "minutes": [{"at": minute, **m} for minute, m in sorted(per_minute.items())
                    if start - 600 <= minute <= end],
        "top_errors": [
            {"type": e.type, "count": e.count, "first_seen": e.first_at, "last_seen": e.last_at,
             "message": e.message[:300], "tasks": list(e.tasks)}
            for e in errors[:10]
        ],
        "changes_before": changes,
        "recovery": {"last_error_at": last_error, "resolved_at": closed, "events": recovery},
        "follow_ups": _follow_ups(errors, changes, delayed, opened, first_error),
    }


def _event_text(e: EventEntry) -> str:
    d = e.details
    if e.kind.startswith("annotation"):
        return str(d.get("text") or e.subject)
    if e.kind.startswith("alert."):
        burns = d.get("burn_rates") or {}
        rates = ", ".join(f"{w} {r:g}x" for w, r in burns.items()) if isinstance(burns, dict) \
            else ""
        return f"{d.get('severity', '')} {d.get('objective', '')} ({d.get('windows', '')}; " \
               f"burn {rates})"
    parts = [f"{k}={v}" for k, v in d.items() if isinstance(v, str | int | float) and k != "text"]
    return ", ".join(parts[:6])


def _follow_ups(errors: Sequence[ErrorSummary], changes: Sequence[Mapping[str, Any]],
                delayed: int, opened: float, first_error: float | None) -> list[str]:
    prompts = []
    if errors:
        prompts.append(f"Why did `{errors[0].type}` start? Can a breaker or a retry budget "
                       "stop the retries from piling on next time?")
    if changes:
        prompts.append("Did one of the changes listed just before cause this? If so, how does "
                       "the next deploy get checked before it takes traffic?")
    if first_error is not None and opened - first_error > 600:
        prompts.append(f"The page came {_duration(opened - first_error)} after the first "
                       "error: is the objective's target or alert window right?")
    if delayed:
        prompts.append("Jobs waited past their target: does the queue need more workers or a "
                       "concurrency limit on the failing dependency?")
    prompts.append("Which dead jobs must be retried from the dead-letter queue, and are their "
                   "effects idempotent?")
    prompts.append("What would have made this shorter? (detection, diagnosis, the fix)")
    return prompts


def render_markdown(data: Mapping[str, Any]) -> str:
    inc, summary, impact = data["incident"], data["summary"], data["impact"]
    det, rec = data["detection"], data["recovery"]
    top = summary.get("top_error")
    lines = [
        f"# Incident {inc['id']}: {inc['title']}", "",
        f"Status: {inc['status']}. Opened {iso(inc['opened_at'])} by {inc['opened_by']}"
        + (f", resolved {iso(inc['closed_at'])}." if inc["closed_at"] else "."), "",
        "## Summary", "",
        f"- Outage started: {iso(summary['started_at'])}",
        f"- Paged: {iso(summary['paged_at'])}" if summary["paged_at"] else "- Opened by hand",
        f"- Recovered (last error): {iso(summary['recovered_at'])}",
        f"- Resolved: {iso(summary['resolved_at'])}",
        f"- Duration: {_duration(summary['duration'])}",
    ]
    if top:
        lines.append(f"- Top error: `{top['type']}` x{top['count']}")
    lines += ["", "## Impact", "",
              f"- Attempts finished: {impact['attempts']}; failed: {impact['failed']}; "
              f"dead: {impact['dead']}; delayed past {impact['wait_target']:g}s: "
              f"{impact['delayed']}",
              "- Wait percentiles: " + ", ".join(f"{k} {v}" for k, v in impact["wait"].items())
              + f" (objective {impact['wait_target']:g}s)"]
    budget = impact.get("budget") or {}
    if budget:
        spent = budget.get("spent")
        spent_text = f"{spent:.1%}" if isinstance(spent, float) else "unknown (no traffic)"
        lines.append(f"- Error budget spent: {spent_text} of {budget['objective']}'s budget "
                     f"({budget['bad']} dead of {budget['allowed']:g} allowed over the window)")
        if isinstance(budget.get("left_at_close"), float):
            lines.append(f"- Budget left at the close: {budget['left_at_close']:.1%}")
    lines.append("- Tasks affected: " + (", ".join(impact["tasks"]) or "none"))
    lines.append("- Queues affected: " + (", ".join(impact["queues"]) or "none"))
    lines += ["", "## Detection", "",
              f"- First error: {iso(det['first_error_at'])}",
              f"- Page: {iso(det['paged_at'])}"
              + (f" ({_duration(det['time_to_page'])} later)" if det["time_to_page"] else "")]
    if det.get("alert"):
        lines.append(f"- Rule: {det['alert']}; burn rates: {det.get('burn_rates')}")
    lines += ["", "## Timeline (UTC)", ""]
    for t in data["timeline"]:
        who = f" by {t['actor']}" if t["actor"] else ""
        subject = f" {t['subject']}" if t["subject"] else ""
        lines.append(f"- {iso(t['at'])} **{t['kind']}**{subject}{who}: {t['text']}")
    lines += ["", "## Top errors", ""]
    if data["top_errors"]:
        lines += ["| error | count | first seen | last seen | tasks |", "|---|---|---|---|---|"]
        for e in data["top_errors"]:
            lines.append(f"| `{e['type']}` | {e['count']} | {iso(e['first_seen'])} | "
                         f"{iso(e['last_seen'])} | {', '.join(e['tasks'])} |")
    else:
        lines.append("No errors recorded.")
    lines += ["", "## What changed just before", ""]
    lines += [f"- {iso(c['at'])} {c['kind']} {c['subject']}"
              + (f" by {c['actor']}" if c["actor"] else "") + f": {c['text']}"
              for c in data["changes_before"]] or ["Nothing recorded in the hour before."]
    lines += ["", "## What brought it back", "",
              f"- Last error: {iso(rec['last_error_at'])}; resolved: {iso(rec['resolved_at'])}"]
    lines += [f"- {iso(r['at'])} {r['kind']} {r['subject']}"
              + (f" by {r['actor']}" if r["actor"] else "") + f": {r['text']}"
              for r in rec["events"]]
    lines += ["", "## Follow-ups", ""] + [f"- [ ] {p}" for p in data["follow_ups"]]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Draft:
    data: dict[str, Any]
    markdown: str


__all__ = ["Draft", "DraftBackend", "build_draft", "iso", "render_markdown"]
