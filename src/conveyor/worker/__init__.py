"""The worker runtime: `Worker` runs jobs; see `runtime` for its threads and shutdown."""

from conveyor.worker.runtime import Worker, WorkerStats

__all__ = ["Worker", "WorkerStats"]
