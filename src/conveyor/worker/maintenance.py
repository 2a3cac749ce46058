"""Maintenance that runs once per database, on one elected worker.

Rescuing expired leases, enqueuing due periodic jobs (cron) and pruning old
history need one worker, not all of them: every worker of a database takes part
in the election of the `maintenance` role (the backend's leader table), and only
the leader rescues and prunes. Cron has its own role, `cron`, for which only the
workers that enqueue periodic jobs stand (not burst workers, nor `cron=False`
ones, and only while the app has schedules), so a worker that may not run cron
never keeps the ticks from firing by leading. A term lasts `leader_ttl` (the
worker's lease, at least three poll intervals); the leader renews it once a
third has passed, and a standby asks at every pass (every poll interval; two
when its fetch loop is saturated). An election is a write: a standby costs the
database what the per-worker rescue used to, the leader one rescue per pass and
a renewal per third of its term. A leader that stops gracefully resigns, so
another worker takes over at its next pass. One that dies (SIGKILL, power loss)
keeps the role until its term runs out: a standby takes over within ttl + 2 poll
intervals. A lone worker is its own leader, so rescue always happens while any
worker runs.

Cron stays once per tick across a change of leader: each tick's job carries an
idempotency key, so it is enqueued once whichever worker runs the tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from conveyor.errors import ConveyorError
from conveyor.events import OpsEvent
from conveyor.worker.deps import CronDuty, WorkerBackend
from conveyor.worker.settings import WorkerSettings
from conveyor.worker.stats import WorkerStats

log = logging.getLogger("conveyor.worker.maintenance")

LEADER_ROLE = "maintenance"
CRON_ROLE = "cron"
VACUUM_CHECK = 5.0
"""Seconds between the leader's looks at the job table's dead row versions."""
VACUUM_MIN_DEAD = 50_000
"""Dead row versions (about 25,000 jobs' worth of transitions) that make the leader
vacuum the job table: each job leaves two behind, and until a vacuum removes their
index entries every fetch walks past them. Few enough that a fetch never walks far,
many enough that a busy table is vacuumed every few seconds, not continuously."""


def leader_ttl(settings: WorkerSettings) -> float:
    """How long one term of the maintenance leader lasts without renewal."""
    return max(settings.lease, 3 * settings.poll_interval)


def takeover_bound(settings: WorkerSettings) -> float:
    """Longest time a standby takes to replace a dead leader (with the same settings)."""
    return leader_ttl(settings) + 2 * settings.poll_interval


class Maintenance:
    """Run from the worker's fetch loop: `run(every)` elects, then maintains if leading."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        backend: WorkerBackend,
        retention: float,
        cron: CronDuty | None,
        stats: WorkerStats,
        stopping: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        publish: Callable[[OpsEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self.publish = publish
        """Where operational events go (the app's event bus), when given."""
        self.backend = backend
        self.retention = retention
        self.cron = cron
        """Enqueues due periodic jobs; None: this worker does not stand for the cron role."""
        self.stats = stats
        self.stopping = stopping
        self._clock = clock
        self._ttl = leader_ttl(settings)
        self._renewed: dict[str, float] = {}
        """Monotonic time the last successful election of each role we lead was *sent*."""
        now = clock()
        self._last_prune = now
        self._last_pass = float("-inf")
        self._last_vacuum = now
        self._vacuum: threading.Thread | None = None
        self._pruning: threading.Thread | None = None
        self._prune_due = threading.Event()
        self._prune_busy = threading.Event()

    @property
    def leading(self) -> bool:
        return LEADER_ROLE in self._renewed

    @property
    def leading_cron(self) -> bool:
        return CRON_ROLE in self._renewed

    def run(self, every: float) -> None:
        """Rescue expired leases and enqueue due periodic jobs if the last time is `every`
        seconds ago, and prune if due, for the roles this worker leads (renewing them)."""
        now = self._clock()
        if now - self._last_pass < every:
            return
        self._last_pass = now
        leading = self._hold(LEADER_ROLE, now)
        leading_cron = self.cron is not None and self.cron.wanted() and self._hold(CRON_ROLE, now)
        if not (leading or leading_cron):
            return
        rescued = created = 0
        if leading:
            rescued_ids = self.backend.job_rescue()
            rescued = len(rescued_ids)
            self.stats.rescued += rescued
            if rescued and self.publish is not None:
                self.publish(OpsEvent("worker.died", "", {
                    "why": "lease expired", "jobs": rescued, "job_ids": rescued_ids[:100],
                    "rescued_by": self.settings.worker_id}))
        if leading_cron and self.cron is not None:
            created = self.cron.run_due()
        self.stats.maintenance_passes += 1
        log.debug(
            "worker %s: maintenance pass (%s): rescued %d, cron enqueued %d",
            self.settings.worker_id,
            ", ".join(r for r, on in ((LEADER_ROLE, leading), (CRON_ROLE, leading_cron)) if on),
            rescued, created,
        )
        if leading and now - self._last_prune >= self.settings.prune_interval:
            self._last_prune = now
            self._start_prune()
        if leading and now - self._last_vacuum >= VACUUM_CHECK:
            self._last_vacuum = now
            self._start_vacuum()

    def _hold(self, role: str, now: float) -> bool:
        """Whether we lead `role` now. A leader renews its term once a third of it has
        passed (counted from when the last renewal was sent, so a leader paused past
        its term asks again before it acts); a standby asks at every pass."""
        renewed = self._renewed.get(role)
        if renewed is not None and now - renewed < self._ttl / 3:
            return True
        worker_id = self.settings.worker_id
        leading = self.backend.leader_elect(role, worker_id, self._ttl)
        if leading:
            self._renewed[role] = now
            if renewed is None:
                log.info("worker %s: leads %s", worker_id, _WHAT[role])
        elif renewed is not None:
            del self._renewed[role]
            log.info("worker %s: no longer leads %s", worker_id, _WHAT[role])
        return leading

    def _start_prune(self) -> None:
        """Prune in a thread of its own, one pass at a time. At thousands of completions
        a second a pass deletes hundreds of thousands of rows (seconds of work), and the
        fetch loop that runs maintenance must not wait for it: while it did (half a
        second per pass, every pass while behind), the leader's prefetched jobs waited
        with it, and the pickup latency of the whole fleet rose once pruning began. One
        thread for the worker's life, not one per pass: a backend may hold a connection
        per thread (SQLite does)."""
        if self._prune_busy.is_set():
            return
        self._prune_busy.set()
        if self._pruning is None or not self._pruning.is_alive():
            self._pruning = threading.Thread(
                target=self._prune_when_due, name="conveyor-prune", daemon=True
            )
            self._pruning.start()
        self._prune_due.set()

    def _prune_when_due(self) -> None:
        while not self.stopping.is_set():
            if not self._prune_due.wait(timeout=1.0):
                continue
            self._prune_due.clear()
            try:
                self._prune()
            finally:
                self._prune_busy.clear()

    def _prune(self) -> None:
        """Delete finished history past retention in short batches (one transaction each,
        so no lock is held long) until none is left or the worker stops."""
        batch = self.settings.prune_batch
        pruned = 0
        try:
            while not self.stopping.is_set():
                deleted = self.backend.job_prune(self.retention, batch)
                pruned += deleted
                if deleted < batch:
                    break
        except ConveyorError as exc:  # the next interval tries again
            log.warning("worker %s: could not prune finished jobs (%s)",
                        self.settings.worker_id, exc)
        if pruned:
            log.debug("worker %s: pruned %d finished job(s)", self.settings.worker_id, pruned)

    def _start_vacuum(self) -> None:
        """Vacuum the job table if it needs it, in a thread of its own: a vacuum of a
        large table takes seconds, and the fetch loop that runs maintenance must not
        wait for it. One at a time."""
        if self._vacuum is not None and self._vacuum.is_alive():
            return
        self._vacuum = threading.Thread(
            target=self._vacuum_once, name="conveyor-vacuum", daemon=True
        )
        self._vacuum.start()

    def _vacuum_once(self) -> None:
        started = time.monotonic()
        try:
            ran = self.backend.job_vacuum(VACUUM_MIN_DEAD)
        except ConveyorError as exc:  # the next check tries again
            log.warning("worker %s: could not vacuum the job table (%s)",
                        self.settings.worker_id, exc)
            return
        if ran:
            self.stats.vacuums += 1
            log.debug("worker %s: vacuumed the job table in %.2fs",
                      self.settings.worker_id, time.monotonic() - started)

    def resign(self) -> None:
        """Give the roles up (graceful stop), so standbys take over at their next pass."""
        for role in list(self._renewed):
            del self._renewed[role]
            try:
                self.backend.leader_resign(role, self.settings.worker_id)
            except ConveyorError as exc:  # its term runs out by itself
                log.warning(
                    "worker %s: could not resign the %s role (%s); another worker takes over "
                    "when the term ends", self.settings.worker_id, role, exc,
                )


_WHAT = {
    LEADER_ROLE: "maintenance (lease rescue, pruning, vacuum)",
    CRON_ROLE: "cron (periodic jobs)",
}


__all__ = [
    "CRON_ROLE", "LEADER_ROLE", "VACUUM_CHECK", "VACUUM_MIN_DEAD", "Maintenance",
    "leader_ttl", "takeover_bound",
]
