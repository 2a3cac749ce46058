"""Incidents: the durable log of operational events, incidents and their postmortem
drafts, and the silent-failure detectors.

- `eventlog`: what the event bus publishes (`OpsEvent`, and any non-job event),
  written to the database in batches, off the job path; retention configurable.
- `tracker`: an incident opens when a page-level alert fires (or by hand) and
  closes when it resolves; alert notices link to it.
- `draft`: the postmortem draft of one incident, as JSON and Markdown.
- `detectors`: the failures nothing pages on (a queue nobody serves, a task no
  worker knows, a stalled worker, a growing dead-letter queue, a missed cron
  tick, a spool that does not drain).
- `service`: `Incidents`, what the CLI, the API and the dashboard call
  (`app.incidents`).

See docs/incidents.md.
"""

from __future__ import annotations

from conveyor.errors import ConfigurationError


def check_dashboard_url(url: str | None) -> str | None:
    """The dashboard's address (incident links in alert notices), checked."""
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"dashboard_url must start with http:// or https://, got {url!r}"
        )
    return url.rstrip("/")


__all__ = ["check_dashboard_url"]
