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
            if lost:
                log.warning(
                    "worker %s: lost the lease of job(s) %s (paused too long or cut off); "
                    "another worker may run them", settings.worker_id, [r.id for r in lost],
                )
        self.backend.worker_heartbeat(_info(settings, self.started_at, running))

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
