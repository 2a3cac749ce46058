"""The worker runtime: `Worker` runs jobs; see `runtime` for its threads and shutdown.

Modules: `runtime` (fetch loop, slots, shutdown), `held` (the jobs a worker holds
and the fencing check), `completer`, `heartbeat`, `maintenance` (leader-elected
rescue, cron, pruning), `settings` (validated once), `deps` (what the worker
needs from the app), `breaker` and `budget` (flow control around each attempt:
shared circuit breakers, retry budgets), `executor` and `child` (running one attempt).
"""

from conveyor.worker.runtime import Worker
from conveyor.worker.settings import WorkerSettings
from conveyor.worker.stats import WorkerStats

__all__ = ["Worker", "WorkerSettings", "WorkerStats"]
