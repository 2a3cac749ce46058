"""Retry budgets of one worker process's tasks, shared through the database.

A retry (attempt 2 or later) takes one unit of its task's budget in one
transaction (`FlowStore.retry_budget_take`): allowed while the window's retries
stay within `ratio` x its first attempts + `floor`. Past the budget the retry is
deferred (its attempt not counted), logged, counted and published
(`retry_deferred`). First attempts are counted in memory and added to the
database once a `REFRESH` (or with the next retry), so they cost no round trip.
See `conveyor.worker.breaker` for the middleware that asks.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping

from conveyor.errors import BackendError
from conveyor.events import EventBus, EventName, JobEvent
from conveyor.middleware import Attempt
from conveyor.retry import RetryBudget
from conveyor.worker.breaker import REFRESH, FlowState

log = logging.getLogger("conveyor.worker")

BUDGET_RECHECK = 0.25
"""Seconds a worker defers retries without asking again after the budget said no."""


class RetryBudgets:
    """The retry budgets of one worker process's tasks (shared through the database)."""

    def __init__(
        self,
        budgets: Mapping[str, RetryBudget],
        *,
        now: Callable[[], float],
        worker_id: str = "",
        events: EventBus | None = None,
        flush_every: float = REFRESH,
    ) -> None:
        self.budgets = dict(budgets)
        self._now = now
        self._worker_id = worker_id
        self._events = events
        self._flush_every = flush_every
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._flushed_at = now()
        self._denied_until: dict[str, float] = {}
        self.store: FlowState | None = None

    @property
    def has_budgets(self) -> bool:
        return bool(self.budgets)

    def attach(self, store: FlowState) -> None:
        self.store = store

    def first_attempt(self, task: str) -> None:
        """Count a first attempt; now and then add the counts to the database."""
        if task not in self.budgets:
            return
        now = self._now()
        with self._lock:
            self._pending[task] = self._pending.get(task, 0) + 1
            if now - self._flushed_at < self._flush_every:
                return
            self._flushed_at = now
            pending, self._pending = self._pending, {}
        self._write(pending)

    def flush(self) -> None:
        """Add every pending count now (at shutdown)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        self._write(pending)

    def _write(self, pending: dict[str, int]) -> None:
        if self.store is None:
            return
        for task, firsts in pending.items():
            try:
                self.store.retry_budget_count(task, firsts)
            except BackendError as exc:
                log.debug("retry budget of %s: %d first attempts not counted yet (%s)",
                          task, firsts, exc)
                with self._lock:
                    self._pending[task] = self._pending.get(task, 0) + firsts

    def take(self, attempt: Attempt) -> float:
        """0.0: the retry may run (one unit taken); else seconds to defer it."""
        budget = self.budgets.get(attempt.task)
        if budget is None or self.store is None:
            return 0.0
        now = self._now()
        if now < self._denied_until.get(attempt.task, 0.0):
            return self._deferral(budget)
        with self._lock:
            firsts = self._pending.pop(attempt.task, 0)
        try:
            use = self.store.retry_budget_take(
                attempt.task, first_attempts=firsts, window=budget.window,
                ratio=budget.ratio, floor=budget.floor,
            )
        except BackendError as exc:
            with self._lock:
                self._pending[attempt.task] = self._pending.get(attempt.task, 0) + firsts
            log.debug("retry budget of %s not asked (%s); the retry runs", attempt.task, exc)
            return 0.0
        if use.allowed:
            return 0.0
        self._denied_until[attempt.task] = now + min(BUDGET_RECHECK, budget.window / 10)
        wait = self._deferral(budget)
        why = (
            f"retry budget spent: {use.retries} retries for {use.first_attempts} first "
            f"attempts within {budget.window:g}s (allowed: {budget.ratio:g} x first attempts "
            f"+ {budget.floor}); attempt {attempt.attempt} deferred {wait:.1f}s, not counted"
        )
        log.warning("worker %s: job %s of task %s: %s", self._worker_id, attempt.id,
                    attempt.task, why, extra={"task": attempt.task, "job_id": attempt.id,
                                               "event": str(EventName.RETRY_DEFERRED)})
        events = self._events
        if events is not None and events.has_observers and events.wants(
            EventName.RETRY_DEFERRED
        ):
            events.emit(JobEvent(
                EventName.RETRY_DEFERRED, attempt.id, attempt.task, attempt.queue,
                attempt=attempt.attempt, worker=self._worker_id, retry_delay=wait, detail=why,
            ))
        return wait

    @staticmethod
    def _deferral(budget: RetryBudget) -> float:
        # Spread the deferred retries over the window, so they come back as the budget
        # frees up rather than all at once.
        return budget.window * random.uniform(0.1, 0.3)


__all__ = ["BUDGET_RECHECK", "RetryBudgets"]
