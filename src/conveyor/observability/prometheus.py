"""Prometheus metrics: counters and histograms from job events, gauges from the backend.

    from conveyor.observability.prometheus import JobMetrics, serve_metrics

    metrics = JobMetrics(app)                 # subscribes to app.events
    server = serve_metrics(metrics, port=9108) # http://127.0.0.1:9108/metrics

`conveyor worker --metrics-port 9108` does both. Names follow the Prometheus
conventions (see docs/observability.md for the full list): counters end in
`_total`, durations are histograms in seconds, and the only labels are `queue`
and `task` (`state` on the queue gauge), never a job id or an argument.

Counters and histograms count what *this process* did (sum them across
processes in PromQL); the gauges are read from the backend at scrape time, so
every process reports the same queue depth (take `max`, not `sum`). A backend
that does not answer makes `conveyor_backend_up` 0 and leaves the gauges out;
the scrape itself still succeeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor.backends.base import WAIT_BUCKETS, LimitState, QueueStats, WorkerInfo
from conveyor.errors import ConveyorError
from conveyor.events import EventBus, EventName, JobEvent

log = logging.getLogger("conveyor.metrics")

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
               300.0, 900.0, 3600.0)
"""Bucket bounds of `conveyor_job_run_seconds`."""

_COUNTED = {
    EventName.ENQUEUED: "enqueued",
    EventName.STARTED: "started",
    EventName.SUCCEEDED: "succeeded",
    EventName.FAILED: "failed",
    EventName.RETRIED: "retried",
    EventName.DEAD: "dead",
    EventName.LOST: "lost",
}
_BREAKER_STATES = {
    EventName.BREAKER_OPENED: "open",
    EventName.BREAKER_HALF_OPEN: "half_open",
    EventName.BREAKER_CLOSED: "closed",
}
_HELP = {
    "enqueued": "Jobs stored by this process (idempotent repeats not counted).",
    "started": "Attempts this process started.",
    "succeeded": "Jobs that ended succeeded in this process.",
    "failed": "Attempts that failed in this process (raised, timed out, discarded).",
    "retried": "Failed attempts scheduled again (attempts left).",
    "dead": "Jobs that ended dead (moved to the dead-letter queue) in this process.",
    "lost": "Completions refused because the lease had moved on (fenced).",
}


class ReadModel(Protocol):
    """The two questions the scrape-time gauges ask (`conveyor.insights.Insights` answers)."""

    def queues(self) -> list[QueueStats]: ...
    def workers(self) -> list[WorkerInfo]: ...
    def limits(self) -> list[LimitState]: ...


class MetricsSource(Protocol):
    """What the metrics read of an app: its event bus and its read model."""

    @property
    def events(self) -> EventBus: ...
    @property
    def insights(self) -> ReadModel: ...


class WatchedWorker(Protocol):
    """What the worker gauges read of a running worker."""

    @property
    def running_jobs(self) -> int: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def stopping(self) -> bool: ...


class BackendCollector(Collector):
    """Gauges read from the backend at scrape time, through the app's `insights`."""

    def __init__(self, app: MetricsSource) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "conveyor_backend_up", "1 if the backend answered this scrape, else 0."
        )
        try:
            insights = self.app.insights
            queues = insights.queues()
            workers = insights.workers()
            limits = insights.limits()
        except ConveyorError as exc:
            log.warning("metrics: the backend did not answer the scrape: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        depth = GaugeMetricFamily(
            "conveyor_queue_jobs", "Jobs in the backend, by queue and state.",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "conveyor_queue_oldest_waiting_seconds",
            "How long the longest-waiting due job of each queue has waited past its run_at "
            "(0 when none waits).",
            labels=["queue"],
        )
        for q in queues:
            for state, count in q.counts.items():
                depth.add_metric([q.queue, str(state)], float(count))
            oldest.add_metric([q.queue], q.oldest_available_age or 0.0)
        yield depth
        yield oldest
        alive = GaugeMetricFamily(
            "conveyor_workers_alive", "Workers that sent a heartbeat recently, by queue.",
            labels=["queue"],
        )
        per_queue: dict[str, int] = {}
        for w in workers:
            for queue in w.queues:
                per_queue[queue] = per_queue.get(queue, 0) + 1
        for queue, count in sorted(per_queue.items()):
            alive.add_metric([queue], float(count))
        yield alive
        yield from _limit_gauges(limits)


def _limit_gauges(limits: list[LimitState]) -> Iterator[GaugeMetricFamily]:
    """Flow control (docs/flow-control.md): what each limit holds back and uses."""
    waiting = GaugeMetricFamily(
        "conveyor_limit_waiting_jobs", "Available jobs held back by each limit (throttled).",
        labels=["limit"])
    running = GaugeMetricFamily(
        "conveyor_limit_running_jobs", "Jobs of each limit running under a live lease.",
        labels=["limit"])
    tokens = GaugeMetricFamily(
        "conveyor_limit_tokens", "Tokens in each rate-limited bucket now (burst when idle).",
        labels=["limit"])
    paused = GaugeMetricFamily(
        "conveyor_limit_paused_seconds", "Seconds left of each limit's pause (RetryAfter).",
        labels=["limit"])
    for state in limits:
        waiting.add_metric([state.name], float(state.waiting))
        running.add_metric([state.name], float(state.running))
        if state.tokens is not None:
            tokens.add_metric([state.name], state.tokens)
        paused.add_metric([state.name], state.paused_for)
    yield waiting
    yield running
    yield tokens
    yield paused


class SpoolReading(Protocol):
    """One reading of a spool (`conveyor.spool.SpoolStatus`)."""

    @property
    def depth(self) -> int: ...
    @property
    def oldest_age(self) -> float | None: ...
    @property
    def forwarded(self) -> int: ...


@runtime_checkable
class SpoolSource(Protocol):
    """What the spool gauges read of an app (see `conveyor.spool`)."""

    def spool_status(self) -> SpoolReading | None: ...


class SpoolCollector(Collector):
    """The local spool of this process's app, read at scrape time (nothing when it
    never spooled): depth, age of the oldest job, jobs forwarded."""

    def __init__(self, app: SpoolSource) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            status = self.app.spool_status()
        except ConveyorError as exc:
            log.warning("metrics: cannot read the spool: %s", exc)
            return
        if status is None:
            return
        depth = GaugeMetricFamily(
            "conveyor_spool_jobs", "Jobs in this host's spool, waiting for the database."
        )
        depth.add_metric([], float(status.depth))
        yield depth
        oldest = GaugeMetricFamily(
            "conveyor_spool_oldest_seconds",
            "Age of the oldest spooled job (0 when the spool is empty).",
        )
        oldest.add_metric([], status.oldest_age or 0.0)
        yield oldest
        forwarded = CounterMetricFamily(
            "conveyor_spool_forwarded",
            "Spooled jobs this process delivered to the database.",
        )
        forwarded.add_metric([], float(status.forwarded))
        yield forwarded


class JobMetrics:
    """This process's job metrics, in its own registry (no global state)."""

    def __init__(self, app: MetricsSource, registry: CollectorRegistry | None = None) -> None:
        self.app = app
        self.registry = registry or CollectorRegistry()
        self._counters = {
            name: Counter(f"conveyor_jobs_{name}", _HELP[name], ["queue", "task"],
                          registry=self.registry)
            for name in _HELP
        }
        self._by_event = {event: self._counters[name] for event, name in _COUNTED.items()}
        self.run_seconds = Histogram(
            "conveyor_job_run_seconds", "Run time of finished attempts, seconds.",
            ["queue", "task"], buckets=RUN_BUCKETS, registry=self.registry,
        )
        self.wait_seconds = Histogram(
            "conveyor_job_wait_seconds",
            "Queue wait of started attempts: start minus run_at, seconds.",
            ["queue", "task"], buckets=WAIT_BUCKETS, registry=self.registry,
        )
        self.breaker_transitions = Counter(
            "conveyor_breaker_transitions_total",
            "Shared circuit breaker changes this process made (once for the fleet each): "
            "state is open, half_open or closed.",
            ["task", "state"], registry=self.registry,
        )
        self.retry_budget_deferred = Counter(
            "conveyor_retry_budget_deferred_total",
            "Retries this process deferred because the task's retry budget was spent "
            "(the attempt is not counted).",
            ["queue", "task"], registry=self.registry,
        )
        self.limit_pauses = Counter(
            "conveyor_limit_pauses", "Pauses of a limit (or a key of it) asked by a task "
            "(RetryAfter(limit=...)) in this process.", ["limit"], registry=self.registry,
        )
        self.registry.register(BackendCollector(app))
        if isinstance(app, SpoolSource):
            self.registry.register(SpoolCollector(app))
        self._unsubscribe: Callable[[], None] | None = app.events.subscribe(self.observe)

    def observe(self, event: JobEvent) -> None:
        state = _BREAKER_STATES.get(event.name)
        if state is not None:
            self.breaker_transitions.labels(event.task, state).inc()
            return
        if event.name is EventName.RETRY_DEFERRED:
            self.retry_budget_deferred.labels(event.queue, event.task).inc()
            return
        if event.name is EventName.LIMIT_PAUSED and event.limit is not None:
            self.limit_pauses.labels(event.limit).inc()
            return
        counter = self._by_event.get(event.name)
        if counter is not None:
            counter.labels(event.queue, event.task).inc()
        if event.duration is not None and event.name in (
            EventName.SUCCEEDED, EventName.FAILED
        ):
            self.run_seconds.labels(event.queue, event.task).observe(event.duration)
        elif event.name is EventName.STARTED and event.wait is not None:
            self.wait_seconds.labels(event.queue, event.task).observe(event.wait)

    def watch_worker(self, worker: WatchedWorker) -> None:
        """Add this process's worker gauges (slots in use, concurrency, liveness)."""
        running = Gauge("conveyor_worker_running_jobs", "Attempts this worker runs now.",
                        registry=self.registry)
        running.set_function(lambda: float(worker.running_jobs))
        slots = Gauge("conveyor_worker_concurrency", "Slots of this worker.",
                      registry=self.registry)
        slots.set(worker.concurrency)
        up = Gauge("conveyor_worker_up", "1 while this worker process runs its fetch loop.",
                   registry=self.registry)
        up.set_function(lambda: 0.0 if worker.stopping else 1.0)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class MetricsServer:
    """A running /metrics endpoint; `close()` stops it."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host, self.port = server.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def serve_metrics(metrics: JobMetrics, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve `metrics` at http://host:port/metrics in a background thread.

    Binds to loopback unless told otherwise: pass host="0.0.0.0" to let a
    Prometheus on another host scrape it. Port 0 picks a free port (see `.port`).
    """
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise ConveyorError(
            f"cannot serve metrics on {host}:{port} ({exc}): choose another --metrics-port"
        ) from exc
    return MetricsServer(server, thread)


__all__ = ["RUN_BUCKETS", "BackendCollector", "JobMetrics", "MetricsServer", "serve_metrics"]
