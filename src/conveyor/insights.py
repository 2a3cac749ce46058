"""One read model: what the CLI, the metrics gauges, the SLO engine and the web UI ask.

    insights = app.insights
    insights.queues()                 # per queue: jobs by state, oldest waiting age
    insights.workers()                # live workers (heartbeat within the window)
    insights.throughput(since=...)    # finished attempts per minute (durable history)
    insights.totals(window=3600)      # finished attempts per queue and task over a window
    insights.slo()                    # every SLI of every declared objective, with burn rates
    insights.top_errors(since=...)    # most frequent error types of failed attempts
    insights.overview()               # all of the above that a dashboard's front page shows

Each question is one backend query (the SLO statuses: one per window), and
every answer is a frozen dataclass with a `to_json()`-friendly shape (the CLI's
`to_jsonable` turns any of them into JSON). Times are the backend's clock.
Nothing here writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from conveyor.backends.base import JobStats, LimitState, QueueStats, StatsQuery, WorkerInfo
from conveyor.observability.slo import Objective, SLIStatus, evaluate
from conveyor.settings import Settings
from conveyor.types import JobState


class ReadBackend(Protocol):
    """The backend calls the read model makes (all reads)."""

    def now(self) -> float: ...
    def queue_stats(self) -> list[QueueStats]: ...
    def worker_list(self, alive_within: float) -> list[WorkerInfo]: ...
    def stats_read(self, query: StatsQuery) -> list[JobStats]: ...
    def stats_error_types(
        self, since: float, *, task: str | None = None, limit: int = 5
    ) -> list[tuple[str, int]]: ...
    def limit_list(self, name: str | None = None) -> list[LimitState]: ...


@dataclass(frozen=True, slots=True)
class Overview:
    now: float
    queues: list[QueueStats]
    workers: list[WorkerInfo]
    slos: list[SLIStatus]

    @property
    def totals(self) -> dict[JobState, int]:
        return {state: sum(q.counts.get(state, 0) for q in self.queues) for state in JobState}


def worker_json(worker: WorkerInfo, now: float) -> dict[str, Any]:
    """One live worker as JSON (the API's, the dashboard's and `conveyor status --json`'s)."""

    def iso(at: float) -> str:
        return datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")

    return {
        "id": worker.id,
        "hostname": worker.hostname,
        "pid": worker.pid,
        "queues": list(worker.queues),
        "concurrency": worker.concurrency,
        "running": worker.running,
        "started_at": iso(worker.started_at),
        "last_heartbeat_at": iso(worker.last_heartbeat_at),
        "seconds_since_heartbeat": max(0.0, now - worker.last_heartbeat_at),
        "meta": dict(worker.meta),
    }


class Insights:
    """Read-only questions about one app's backend. Cheap to build; holds no state.

    `objectives` is the app's registry of SLOs by name (read at each question, so
    an objective declared later is seen); `settings` gives the worker liveness window.
    """

    def __init__(
        self,
        backend: ReadBackend,
        objectives: Mapping[str, Objective],
        settings: Settings | None = None,
    ) -> None:
        self.backend = backend
        self.objectives = objectives
        self.settings = settings or Settings()

    @property
    def default_alive_within(self) -> float:
        """A worker counts as alive if it sent a heartbeat this recently (2 leases, >= 60s)."""
        return self.settings.alive_within

    def now(self) -> float:
        return self.backend.now()

    def queues(self) -> list[QueueStats]:
        """Per queue: jobs by state and how long the oldest due job has waited."""
        return self.backend.queue_stats()

    def limits(self) -> list[LimitState]:
        """Per flow-control limit: its numbers, running and waiting jobs, tokens, pause."""
        return self.backend.limit_list()

    def workers(self, alive_within: float | None = None) -> list[WorkerInfo]:
        window = self.default_alive_within if alive_within is None else alive_within
        return self.backend.worker_list(alive_within=window)

    def throughput(
        self,
        since: float,
        until: float | None = None,
        *,
        task: str | None = None,
        queue: str | None = None,
    ) -> list[JobStats]:
        """Finished attempts per minute (succeeded, retried, dead, waits, run time), oldest
        first, one row per minute, queue and task that saw any."""
        end = self.now() + 60.0 if until is None else until
        return self.backend.stats_read(
            StatsQuery(since=since, until=end, task=task, queue=queue, per_minute=True)
        )

    def totals(
        self, window: float, *, task: str | None = None, queue: str | None = None
    ) -> list[JobStats]:
        """Finished attempts per queue and task over the last `window` seconds."""
        now = self.now()
        since = math.floor((now - window) / 60.0) * 60.0
        return self.backend.stats_read(
            StatsQuery(since=since, until=now + 60.0, task=task, queue=queue)
        )

    def slo(self, names: Sequence[str] | None = None) -> list[SLIStatus]:
        """Every SLI of the declared objectives (or of those named), as of now."""
        objectives = [
            o for name, o in self.objectives.items() if names is None or name in names
        ]
        if not objectives:
            return []
        return evaluate(self.backend, objectives, self.now())

    def top_errors(
        self, since: float, *, task: str | None = None, limit: int = 5
    ) -> list[tuple[str, int]]:
        """The most frequent error types of attempts that failed since `since`."""
        return self.backend.stats_error_types(since, task=task, limit=limit)

    def overview(self) -> Overview:
        return Overview(
            now=self.now(), queues=self.queues(), workers=self.workers(), slos=self.slo()
        )


__all__ = ["Insights", "Overview", "ReadBackend"]
