"""Burn-rate alerts: evaluated by one elected process, sent to sinks, once per incident.

    from conveyor.observability.alerts import LogSink, SlackSink, WebhookSink

    app.alert_to(WebhookSink("https://alerts.example.com/hook"), SlackSink(slack_url))

Every worker of the app then takes part in a leader election through the
backend (a lease row, renewed by its holder); the leader evaluates every
objective each `interval` seconds (see `conveyor.observability.slo` for the
rules). Alert state lives in the backend too, so a new leader (after a crash or
a deploy) neither repeats a page nor forgets to send its "resolved".

An alert (one per objective, SLI and severity) fires once when its first rule
starts firing and resolves once when none fires. Each notice names the
objective, the rule that fired, the burn rates, the error budget left and the
most frequent error types of recent failed attempts. A sink that fails (HTTP
error, timeout) leaves the state unchanged, so the notice is tried again at the
next evaluation: a page may arrive twice, it is never lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from conveyor.backends.base import AlertState, JobStats, StatsQuery
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.events import EventBus, OpsEvent
from conveyor.observability.slo import Objective, Severity, SLIStatus, evaluate, format_window

log = logging.getLogger("conveyor.alerts")

LEADER_ROLE = "slo-alerts"
"""The leader-election role of the alert evaluator."""
ERROR_LOOKBACK = 3600.0
"""Seconds of failed attempts the top error types are taken from."""
STATS_RETENTION = 35 * 86400.0
"""Per-minute aggregates are kept this long, or the longest SLO window plus a day."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One notice: an alert started firing, or resolved."""

    key: str
    """`objective:sli:severity`, stable across notices of one alert."""
    status: Literal["firing", "resolved"]
    severity: Severity
    objective: str
    sli: str
    task: str | None
    queue: str | None
    target: float
    windows: str
    """The rule that fired, as `long/short` (e.g. `1h/5m`); the last one, when resolved."""
    burn_rates: dict[str, float]
    budget_left: float
    top_errors: list[tuple[str, int]] = field(default_factory=list)
    at: float = 0.0
    """The backend's clock when the alert was evaluated, epoch seconds."""
    incident: int | None = None
    """The incident this page opened or resolved (see `conveyor.incidents`)."""
    incident_url: str | None = None
    """Its dashboard page, when the app was given its dashboard's address."""

    @property
    def summary(self) -> str:
        what = f"{self.objective} ({self.sli}, target {self.target:g}"
        what += f", task {self.task})" if self.task else ")"
        if self.status == "resolved":
            return (f"RESOLVED {self.severity}: {what} burns within budget again; "
                    f"{self.budget_left:.1%} of the error budget left")
        burns = ", ".join(f"{w} {rate:.1f}x" for w, rate in self.burn_rates.items())
        text = (f"{self.severity.upper()}: {what} is burning its error budget "
                f"({self.windows} rule; burn {burns}); {self.budget_left:.1%} of the budget left")
        if self.top_errors:
            errors = ", ".join(f"{t} x{n}" for t, n in self.top_errors)
            text += f"; top errors: {errors}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "status": self.status, "severity": self.severity,
            "objective": self.objective, "sli": self.sli, "task": self.task,
            "queue": self.queue, "target": self.target, "windows": self.windows,
            "burn_rates": self.burn_rates, "budget_left": self.budget_left,
            "top_errors": [{"type": t, "count": n} for t, n in self.top_errors],
            "at": self.at, "summary": self.summary,
            "incident": self.incident, "incident_url": self.incident_url,
        }


class AlertSink(Protocol):
    """Where notices go. `send` raises on failure (the notice is tried again later)."""

    def send(self, alert: Alert) -> None: ...


class LogSink:
    """Notices as log records on `conveyor.alerts`: pages at ERROR, tickets at WARNING,
    resolved at INFO (with `--log-json`, one JSON line each)."""

    def send(self, alert: Alert) -> None:
        if alert.status == "resolved":
            level = logging.INFO
        else:
            level = logging.ERROR if alert.severity == "page" else logging.WARNING
        log.log(level, "%s", alert.summary, extra={"alert": alert.to_json()})


def _post_json(url: str, body: dict[str, Any], timeout: float, headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is checked to be http(s)
        url, data=data, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "conveyor", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        raise ConveyorError(f"alert webhook {url} answered HTTP {exc.code}: {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConveyorError(f"alert webhook {url} unreachable: {exc}") from exc


def _check_url(url: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"a webhook URL must start with http:// or https://, got {url!r}")
    return url


class WebhookSink:
    """POST each notice as JSON (`Alert.to_json()`) to `url`."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None
    ) -> None:
        self.url = _check_url(url)
        self.timeout = timeout
        self.headers = dict(headers or {})

    def send(self, alert: Alert) -> None:
        _post_json(self.url, alert.to_json(), self.timeout, self.headers)


class SlackSink:
    """POST each notice to a Slack-compatible incoming webhook (`{"text": ...}`)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = _check_url(url)
        self.timeout = timeout

    def send(self, alert: Alert) -> None:
        icon = {"page": ":rotating_light:", "ticket": ":warning:"}[alert.severity]
        if alert.status == "resolved":
            icon = ":white_check_mark:"
        text = f"{icon} conveyor {alert.summary}"
        if alert.incident is not None:
            link = f"<{alert.incident_url}|incident {alert.incident}>" if alert.incident_url \
                else f"incident {alert.incident}"
            text += f" ({link})"
        _post_json(self.url, {"text": text}, self.timeout, {})


def _notices(statuses: Sequence[SLIStatus], current: dict[str, AlertState]) -> list[
    tuple[str, SLIStatus, Severity, bool, str]
]:
    """(key, status, severity, firing now, rule) for each alert whose state changes."""
    changes: list[tuple[str, SLIStatus, Severity, bool, str]] = []
    for status in statuses:
        severities: tuple[Severity, ...] = ("page", "ticket")
        for severity in severities:
            key = f"{status.key}:{severity}"
            firing_rules = status.firing(severity)
            was = current.get(key)
            was_firing = was is not None and was.firing
            if bool(firing_rules) == was_firing:
                continue
            if firing_rules:
                rule = firing_rules[0].rule.name
            else:
                rule = str(was.details.get("windows", "")) if was is not None else ""
            changes.append((key, status, severity, bool(firing_rules), rule))
    return changes


class AlertBackend(Protocol):
    """The backend calls the evaluator makes: the clock, the per-minute aggregates,
    the leader election and the alert state."""

    def now(self) -> float: ...
    def stats_read(self, query: StatsQuery) -> list[JobStats]: ...
    def stats_error_types(
        self, since: float, *, task: str | None = None, limit: int = 5
    ) -> list[tuple[str, int]]: ...
    def stats_prune(self, older_than: float) -> int: ...
    def leader_elect(self, name: str, holder: str, ttl: float) -> bool: ...
    def leader_resign(self, name: str, holder: str) -> None: ...
    def alert_list(self) -> list[AlertState]: ...
    def alert_set(self, state: AlertState) -> None: ...


class IncidentHook(Protocol):
    """Told of every alert before it is sent (`conveyor.incidents` opens and closes
    incidents on pages); returns the alert to send (with its incident)."""

    def alert_changed(self, alert: Alert) -> Alert: ...


class AlertEvaluator:
    """Evaluates the objectives and notifies the sinks, when elected.

    `objectives` is the app's registry of SLOs by name, read at each evaluation.
    """

    def __init__(
        self,
        backend: AlertBackend,
        objectives: Mapping[str, Objective],
        sinks: Sequence[AlertSink],
        *,
        interval: float = 60.0,
        holder: str | None = None,
        events: EventBus | None = None,
        incidents: IncidentHook | None = None,
    ) -> None:
        if interval <= 0:
            raise ConfigurationError(f"alert interval must be > 0 seconds, got {interval!r}")
        self.backend = backend
        self.objectives = objectives
        self.sinks = list(sinks)
        self.interval = float(interval)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = float("-inf")
        self.events = events
        """Where `alert.fired` and `alert.resolved` are published (the event log)."""
        self.incidents = incidents

    # -- one evaluation ---------------------------------------------------------------
    def tick(self) -> list[Alert]:
        """Take or renew the leadership; if we lead, evaluate. Returns the notices sent."""
        backend = self.backend
        if not backend.leader_elect(LEADER_ROLE, self.holder, ttl=3 * self.interval):
            return []
        return self.evaluate()

    def evaluate(self) -> list[Alert]:
        """Evaluate every objective now and send the notices of alerts that changed."""
        backend = self.backend
        objectives = list(self.objectives.values())
        if not objectives:
            return []
        now = backend.now()
        if now - self._pruned_at >= 3600.0:
            keep = max([STATS_RETENTION, *(o.window + 86400.0 for o in objectives)])
            backend.stats_prune(keep)
            self._pruned_at = now
        statuses = evaluate(backend, objectives, now)
        current = {state.key: state for state in backend.alert_list()}
        sent: list[Alert] = []
        errors_cache: dict[str | None, list[tuple[str, int]]] = {}
        for key, status, severity, firing, rule in _notices(statuses, current):
            task = status.objective.task
            if firing and task not in errors_cache:
                errors_cache[task] = backend.stats_error_types(
                    now - ERROR_LOOKBACK, task=task, limit=5
                )
            alert = Alert(
                key=key, status="firing" if firing else "resolved", severity=severity,
                objective=status.objective.name, sli=status.sli, task=task,
                queue=status.objective.queue, target=status.target, windows=rule,
                burn_rates={format_window(w): round(r, 3) for w, r in status.burn_rates.items()},
                budget_left=status.budget_left,
                top_errors=errors_cache.get(task, []) if firing else [], at=now,
            )
            if self.incidents is not None:
                try:
                    alert = self.incidents.alert_changed(alert)
                except ConveyorError as exc:
                    log.error("could not record the incident of alert %s (%s)", key, exc)
            if self._deliver(alert):
                backend.alert_set(AlertState(key, firing, details={"windows": rule}))
                sent.append(alert)
                if self.events is not None:
                    kind = "alert.fired" if firing else "alert.resolved"
                    self.events.publish(OpsEvent(kind, key, alert.to_json(), at=alert.at))
        return sent

    def _deliver(self, alert: Alert) -> bool:
        delivered = True
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception as exc:
                delivered = False
                log.error("could not send alert %s to %r (%s); trying again at the next "
                          "evaluation", alert.key, sink, exc)
        return delivered

    # -- running in the background ----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="conveyor-alerts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except ConveyorError as exc:
                log.warning("SLO alert evaluation failed (%s); trying again in %.0fs",
                            exc, self.interval)
            except Exception:
                log.exception("SLO alert evaluation failed; trying again in %.0fs", self.interval)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        with contextlib.suppress(ConveyorError):  # else the lease runs out by itself
            self.backend.leader_resign(LEADER_ROLE, self.holder)


__all__ = [
    "LEADER_ROLE",
    "Alert",
    "AlertBackend",
    "AlertEvaluator",
    "AlertSink",
    "IncidentHook",
    "LogSink",
    "SlackSink",
    "WebhookSink",
]
