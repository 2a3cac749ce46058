"""Silent-failure detectors: the failures that page nobody because nothing errors.

Each detector looks at the database once and returns its findings (empty when
all is well). `conveyor doctor` runs them all once and exits 1 when one fires;
`conveyor status` and the dashboard show a line each; every worker's
`/metrics` exports `conveyor_detector_firing{detector=...}` (1 or 0) and
`conveyor_detector_findings{detector=...}`, and `conveyor slo rules` writes one
Prometheus alert per detector on them.

| detector        | fires when (within two of its intervals)                                 |
|-----------------|--------------------------------------------------------------------------|
| unserved_queue  | a queue has due jobs waiting an interval and no live worker serves it     |
|                 | (and it is not paused)                                                   |
| unknown_task    | a job went dead in the last interval because no worker knows its task    |
| stalled_worker  | a live worker holds jobs and finished none for an interval               |
| dlq_growing     | jobs went dead in the minutes overlapping the last interval (at least    |
|                 | `dlq_threshold`)                                                         |
| missed_cron     | a cron entry's tick is an interval old and no job exists for it, nor     |
|                 | for a later tick                                                         |
| spool_stuck     | this host's spool holds a job older than an interval                     |

"What we say is true": each finding names what it saw, with numbers, and a
healthy system (served queues, known tasks, finishing workers, no dead jobs,
cron on time, an empty spool) has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.backends.base import (
    ErrorSummary,
    QueuePause,
    QueueStats,
    StatsQuery,
    WorkerInfo,
)
from conveyor.backends.base import JobStats as _JobStats
from conveyor.clock import format_duration
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.types import JobState

DETECTORS: dict[str, str] = {
    "unserved_queue": "a queue with waiting jobs and no worker serving it",
    "unknown_task": "jobs going dead because no worker knows their task",
    "stalled_worker": "workers alive but making no progress",
    "dlq_growing": "the dead-letter queue growing",
    "missed_cron": "a cron entry that did not fire on time",
    "spool_stuck": "a spool that is not draining",
}
"""Every detector by name, with what it catches."""


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    subject: str
    """The queue, task, worker, cron entry or spool path concerned."""
    message: str
    value: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"detector": self.detector, "subject": self.subject, "message": self.message,
                "value": self.value}


@dataclass(frozen=True, slots=True)
class DetectorResult:
    name: str
    about: str
    interval: float
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    """Why the detector could not look (the database did not answer...)."""

    @property
    def firing(self) -> bool:
        return bool(self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"detector": self.name, "about": self.about, "interval": self.interval,
                "firing": self.firing, "findings": [f.to_json() for f in self.findings],
                "error": self.error}


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    interval: float = 60.0
    """Seconds each detector looks back (and, run periodically, between two looks)."""
    dlq_interval: float = 300.0
    dlq_threshold: int = 1
    alive_within: float = 60.0
    """A worker counts as alive if it sent a heartbeat this recently."""

    def __post_init__(self) -> None:
        for name in ("interval", "dlq_interval", "alive_within"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"detector {name} must be > 0 seconds, got {value!r}")
        if not isinstance(self.dlq_threshold, int) or self.dlq_threshold < 1:
            raise ConfigurationError(
                f"dlq_threshold must be an int >= 1, got {self.dlq_threshold!r}")


class DetectorBackend(Protocol):
    def now(self) -> float: ...
    def queue_stats(self) -> list[QueueStats]: ...
    def queue_pause_list(self) -> list[QueuePause]: ...
    def worker_list(self, alive_within: float) -> list[WorkerInfo]: ...
    def error_summary(self, since: float, until: float, limit: int = 10) -> list[ErrorSummary]: ...
    def stats_read(self, query: StatsQuery) -> list[_JobStats]: ...
    def job_key_count(self, task: str, key: str) -> int: ...


class CronLike(Protocol):
    """What the missed-cron detector reads of a cron entry (`conveyor.scheduler.CronEntry`)."""

    @property
    def name(self) -> str: ...
    @property
    def max_lateness(self) -> float: ...
    def key(self, tick: float) -> str: ...
    def due(self, since: float, until: float) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class SpoolView:
    path: str
    depth: int
    oldest_age: float | None


def unserved_queue(backend: DetectorBackend, s: DetectorSettings, now: float,
                   workers: Sequence[WorkerInfo]) -> list[Finding]:
    paused = {p.queue for p in backend.queue_pause_list()}
    served = {q for w in workers for q in w.queues}
    found = []
    for q in backend.queue_stats():
        age = q.oldest_available_age
        if q.queue in paused or q.queue in served or age is None or age < s.interval:
            continue
        waiting = q.counts.get(JobState.AVAILABLE, 0)
        found.append(Finding(
            "unserved_queue", q.queue,
            f"queue {q.queue!r}: {waiting} job(s) waiting, the oldest for "
            f"{format_duration(age)}, and no live worker serves it: start one with "
            f"`conveyor worker --queues {q.queue}`", float(waiting)))
    return found


def unknown_task(backend: DetectorBackend, s: DetectorSettings, now: float) -> list[Finding]:
    return [
        Finding("unknown_task", ",".join(e.tasks) or e.type,
                f"{e.count} attempt(s) of task(s) {', '.join(e.tasks) or '?'} failed in the last "
                f"{format_duration(s.interval)} because no worker knows the task: deploy the "
                "code that defines it, then retry them from the dead-letter queue",
                float(e.count))
        for e in backend.error_summary(now - s.interval, now + 1, limit=50)
        if e.type.endswith("UnknownTaskError")
    ]


def stalled_worker(s: DetectorSettings, workers: Sequence[WorkerInfo]) -> list[Finding]:
    found = []
    for w in workers:
        stalled = w.meta.get("stalled_seconds") if isinstance(w.meta, dict) else None
        if w.running > 0 and isinstance(stalled, int | float) and stalled >= s.interval:
            found.append(Finding(
                "stalled_worker", w.id,
                f"worker {w.id} (pid {w.pid} on {w.hostname}) is alive and holds {w.running} "
                f"job(s) but finished none for {format_duration(float(stalled))}: look for a "
                "hung dependency (py-spy dump --pid), or stop it and let the leases expire",
                float(stalled)))
    return found


def dlq_growing(backend: DetectorBackend, s: DetectorSettings, now: float) -> list[Finding]:
    # The per-minute aggregates: every minute that overlaps the interval.
    since = math.floor((now - s.dlq_interval) / 60) * 60
    rows = backend.stats_read(StatsQuery(since=since, until=now + 60))
    by_task: dict[str, int] = {}
    for r in rows:
        if r.dead:
            by_task[r.task] = by_task.get(r.task, 0) + r.dead
    total = sum(by_task.values())
    if total < s.dlq_threshold:
        return []
    tasks = ", ".join(f"{t} {n}" for t, n in sorted(by_task.items(), key=lambda i: -i[1]))
    return [Finding("dlq_growing", "dlq",
                    f"{total} job(s) went to the dead-letter queue in the last "
                    f"{format_duration(s.dlq_interval)} ({tasks}): see `conveyor dlq list`",
                    float(total))]


def missed_cron(backend: DetectorBackend, s: DetectorSettings, now: float,
                schedules: Iterable[CronLike], task_of: Callable[[CronLike], str]) -> list[Finding]:
    found = []
    for entry in schedules:
        # The latest tick that is at least an interval old (and still within reach), and
        # the ticks after it: a worker that catches up fires only the latest of them.
        ticks = entry.due(now - s.interval - max(entry.max_lateness, s.interval), now)
        old = [t for t in ticks if t <= now - s.interval]
        if not old:
            continue
        tick = old[-1]
        task = task_of(entry)
        if not any(backend.job_key_count(task, entry.key(t)) for t in ticks if t >= tick):
            found.append(Finding(
                "missed_cron", entry.name,
                f"cron {entry.name!r} did not fire for its tick {format_duration(now - tick)} "
                "ago: is a worker running with cron enabled (not --burst, not cron=False)?",
                now - tick))
    return found


def spool_stuck(s: DetectorSettings, spool: SpoolView | None) -> list[Finding]:
    if spool is None or spool.oldest_age is None or spool.oldest_age < s.interval:
        return []
    return [Finding(
        "spool_stuck", spool.path,
        f"the spool {spool.path} holds {spool.depth} job(s), the oldest for "
        f"{format_duration(spool.oldest_age)}: is the database reachable from this host? "
        "(`conveyor spool status`, `conveyor spool flush`)", float(spool.depth))]


def run_detectors(
    backend: DetectorBackend,
    settings: DetectorSettings,
    *,
    schedules: Mapping[str, CronLike] | None = None,
    task_of: Callable[[CronLike], str] | None = None,
    spool: Callable[[], SpoolView | None] | None = None,
    only: Sequence[str] = (),
) -> list[DetectorResult]:
    """Run every detector (or those in `only`) once; a detector that cannot look reports
    its error instead of findings (and does not stop the others)."""
    try:
        now = backend.now()
        unreachable = None
    except ConveyorError as exc:  # the spool detector still looks: that is when it matters
        import time

        now, unreachable = time.time(), str(exc)
    workers: list[WorkerInfo] | None = None

    def live() -> list[WorkerInfo]:
        nonlocal workers
        if workers is None:
            workers = backend.worker_list(settings.alive_within)
        return workers

    runs: dict[str, Callable[[], list[Finding]]] = {
        "unserved_queue": lambda: unserved_queue(backend, settings, now, live()),
        "unknown_task": lambda: unknown_task(backend, settings, now),
        "stalled_worker": lambda: stalled_worker(settings, live()),
        "dlq_growing": lambda: dlq_growing(backend, settings, now),
        "missed_cron": lambda: missed_cron(
            backend, settings, now, (schedules or {}).values(),
            task_of or (lambda e: str(getattr(getattr(e, "task", None), "name", "")))),
        "spool_stuck": lambda: spool_stuck(settings, spool() if spool else None),
    }
    results = []
    for name, run in runs.items():
        if only and name not in only:
            continue
        interval = settings.dlq_interval if name == "dlq_growing" else settings.interval
        if unreachable is not None and name != "spool_stuck":
            results.append(DetectorResult(name, DETECTORS[name], interval, error=unreachable))
            continue
        try:
            results.append(DetectorResult(name, DETECTORS[name], interval, run()))
        except Exception as exc:  # one broken look must not hide the others
            results.append(DetectorResult(name, DETECTORS[name], interval, error=str(exc)))
    return results


def prometheus_rules(settings: DetectorSettings | None = None) -> str:
    """One Prometheus alert per detector on `conveyor_detector_firing` (YAML lines)."""
    settings = settings or DetectorSettings()
    lines = ["  - name: \"conveyor-silent-failures\"", "    rules:"]
    for name, about in DETECTORS.items():
        interval = settings.dlq_interval if name == "dlq_growing" else settings.interval
        lines += [
            "      - alert: ConveyorSilentFailure",
            f"        expr: \"max(conveyor_detector_firing{{detector=\\\"{name}\\\"}}) > 0\"",
            f"        for: \"{int(interval)}s\"",
            f"        labels: {{detector: \"{name}\", severity: \"ticket\"}}",
            f"        annotations: {{summary: \"conveyor detector {name}: {about}\"}}",
        ]
    return "\n".join(lines) + "\n"


__all__ = [
    "DETECTORS", "CronLike", "DetectorBackend", "DetectorResult", "DetectorSettings", "Finding",
    "SpoolView", "prometheus_rules", "run_detectors",
]
