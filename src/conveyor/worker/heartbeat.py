"""The heartbeat thread: extends the leases of every held job, records the worker's own
liveness, and enforces soft timeouts (thread pool)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from conveyor.backends.base import WorkerInfo
from conveyor.errors import BackendError, TaskTimeout
from conveyor.events import OpsEvent
from conveyor.middleware import AttemptResult
from conveyor.types import JobRecord
from conveyor.worker.deps import WorkerBackend
from conveyor.worker.held import HeldJobs
from conveyor.worker.settings import WorkerSettings

log = logging.getLogger("conveyor.worker")


class Heartbeat:
    def __init__(
        self,
        *,
        settings: WorkerSettings,
        backend: WorkerBackend,
        held: HeldJobs,
        started_at: float,
        complete: Callable[[JobRecord, AttemptResult], None],
        stopping: threading.Event,
        hard_stop: threading.Event,
        answered: threading.Event,
        finished: Callable[[], int] | None = None,
        publish: Callable[[OpsEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.held = held
        self.started_at = started_at
        self.complete = complete
        """Queues the completion of an attempt (a timed-out one, here)."""
        self.stopping = stopping
        self.hard_stop = hard_stop
        self.answered = answered
        """Set when the backend answers: cuts short a backoff wait of the fetch loop."""
        self.finished = finished
        """Attempts this worker finished so far (for the stalled-worker detector)."""
        self.publish = publish
        self._finished_seen = -1
        self._progress_at = time.monotonic()

    def main(self) -> None:
        interval = self.settings.heartbeat_interval
        next_beat = 0.0
        tick = min(0.05, interval)
        while not self.hard_stop.is_set():
            self.enforce_soft_timeouts()
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + interval
                try:
                    self.beat()
                except BackendError:
                    pass
                else:
                    self.answered.set()
            if self.stopping.is_set() and self.held.idle():
                return
            self.hard_stop.wait(tick)

    def beat(self) -> None:
        settings = self.settings
        jobs, running = self.held.snapshot()
        if jobs:
            sent_at = time.monotonic()
            kept = self.backend.job_heartbeat(settings.worker_id, jobs, settings.lease)
            lost = self.held.renewed(jobs, kept, sent_at)
            if lost and self.publish is not None:
                self.publish(OpsEvent("worker.lost_lease", settings.worker_id,
                                      {"job_ids": [r.id for r in lost][:100], "jobs": len(lost)}))
            if lost:
                log.warning(
                    "worker %s: lost the lease of job(s) %s (paused too long or cut off); "
                    "another worker may run them", settings.worker_id, [r.id for r in lost],
                )
        now = time.monotonic()
        finished = self.finished() if self.finished is not None else 0
        if running == 0 or finished != self._finished_seen:
            self._finished_seen = finished
            self._progress_at = now
        info = _info(settings, self.started_at, running)
        info.meta["stalled_seconds"] = round(now - self._progress_at, 3)
        self.backend.worker_heartbeat(info)

    def enforce_soft_timeouts(self) -> None:
        for record in self.held.timed_out():
            log.warning(
                "worker %s: job %s exceeded its %ss timeout; the attempt is failed, but a thread "
                "cannot be stopped: it keeps its slot until it returns (use pool='process' for "
                "hard timeouts)", self.settings.worker_id, record.id, record.timeout,
                extra={"job_id": record.id, "task": record.task},
            )
            self.complete(record, AttemptResult.failed(TaskTimeout(
                f"attempt exceeded the task's timeout of {record.timeout}s (soft timeout: the "
                "thread could not be stopped)"
            )))


def _info(settings: WorkerSettings, started_at: float, running: int) -> WorkerInfo:
    return WorkerInfo(
        id=settings.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
        queues=list(settings.queues), concurrency=settings.concurrency, started_at=started_at,
        running=running, meta={"pool": settings.pool},
    )


__all__ = ["Heartbeat"]
