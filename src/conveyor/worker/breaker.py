"""Circuit breakers: one per task that asks for one (`@app.task(breaker=...)`), per worker.

    closed ──(failure rate over the window)──► open ──(cooldown over)──► half-open
      ▲                                          ▲                          │
      └───────────(the probe succeeded)──────────┴─(the probe failed: cooldown x 2)

`BreakerMiddleware` (built in, the outermost attempt middleware) asks
`admit(task)` before each attempt: 0 means run it; anything else is how many
seconds the job should wait, and the middleware answers
`AttemptResult.deferred(wait)` (the worker puts the job back to `scheduled`,
its attempt not counted). After the attempt it reports the outcome with
`record`. The policy is `conveyor.retry.CircuitBreaker`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from conveyor.middleware import Attempt, AttemptNext, AttemptResult, Middleware
from conveyor.retry import CircuitBreaker

log = logging.getLogger("conveyor.worker")

State = Literal["closed", "open", "half-open"]


@dataclass(slots=True)
class _Circuit:
    policy: CircuitBreaker
    state: State = "closed"
    attempts: deque[tuple[float, bool]] = field(default_factory=deque)
    """(when, failed) of the attempts within the window, oldest first."""
    failed: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0
    probing: bool = False

    def forget_before(self, cutoff: float) -> None:
        while self.attempts and self.attempts[0][0] < cutoff:
            _, failed = self.attempts.popleft()
            self.failed -= failed


@dataclass(frozen=True, slots=True)
class Admission:
    wait: float
    """Seconds the job should wait; 0.0 means run it now."""
    probe: bool = False
    """This attempt decides whether a half-open circuit closes."""


RUN = Admission(0.0)


class Breakers:
    """The circuits of one worker process (thread-safe)."""

    def __init__(
        self,
        policies: Mapping[str, CircuitBreaker],
        *,
        now: Callable[[], float] = time.monotonic,
        worker_id: str = "",
    ) -> None:
        self._circuits = {task: _Circuit(policy) for task, policy in policies.items()}
        self._now = now
        self._lock = threading.Lock()
        self._worker_id = worker_id

    @property
    def has_circuits(self) -> bool:
        """True when some task asked for a breaker."""
        return bool(self._circuits)

    def state(self, task: str) -> State:
        circuit = self._circuits.get(task)
        if circuit is None:
            return "closed"
        with self._lock:
            self._advance(circuit, self._now())
            return circuit.state

    def admit(self, task: str) -> Admission:
        circuit = self._circuits.get(task)
        if circuit is None:
            return RUN
        with self._lock:
            now = self._now()
            self._advance(circuit, now)
            if circuit.state == "closed":
                return RUN
            if circuit.state == "open":
                return Admission(max(circuit.open_until - now, 0.001))
            if not circuit.probing:
                circuit.probing = True
                return Admission(0.0, probe=True)
            # A probe is out: the others wait one base cooldown, then ask again.
            return Admission(circuit.policy.cooldown)

    def record(self, task: str, failed: bool | None, *, probe: bool = False) -> None:
        """Report an attempt: failed (retryable error), succeeded, or None (says nothing)."""
        circuit = self._circuits.get(task)
        if circuit is None:
            return
        with self._lock:
            now = self._now()
            if probe and circuit.state == "half-open":
                circuit.probing = False
                if failed is None:
                    return  # no verdict: the next job probes
                if failed:
                    self._open(task, circuit, now, min(
                        circuit.cooldown * 2, circuit.policy.max_cooldown
                    ), why="the probe failed")
                else:
                    circuit.state = "closed"
                    circuit.attempts.clear()
                    circuit.failed = 0
                    log.warning(
                        "worker %s: circuit for task %s closed: the probe succeeded",
                        self._worker_id, task, extra={"task": task},
                    )
                return
            if failed is None or circuit.state != "closed":
                return
            policy = circuit.policy
            circuit.attempts.append((now, failed))
            circuit.failed += failed
            circuit.forget_before(now - policy.window)
            total = len(circuit.attempts)
            if total >= policy.min_attempts and circuit.failed >= policy.failure_rate * total:
                self._open(task, circuit, now, policy.cooldown, why=(
                    f"{circuit.failed} of the last {total} attempts failed within "
                    f"{policy.window:g}s"
                ))

    def _advance(self, circuit: _Circuit, now: float) -> None:
        if circuit.state == "open" and now >= circuit.open_until:
            circuit.state = "half-open"
            circuit.probing = False

    def _open(self, task: str, circuit: _Circuit, now: float, cooldown: float, why: str) -> None:
        circuit.state = "open"
        circuit.cooldown = cooldown
        circuit.open_until = now + cooldown
        circuit.attempts.clear()
        circuit.failed = 0
        log.warning(
            "worker %s: circuit for task %s opened: %s; its jobs wait %gs instead of spending "
            "attempts, then one runs as a probe", self._worker_id, task, why, cooldown,
            extra={"task": task},
        )


def health(result: AttemptResult) -> bool | None:
    """What an attempt says about the task's dependencies, for its circuit breaker:
    True for a failure the retry policy would retry, False for a success, None for
    anything that says nothing (RetryAfter, Discard, dont_retry, unknown task)."""
    if result.kind == "ok":
        return False
    if result.kind == "error" and result.retryable:
        return True
    return None


class BreakerMiddleware(Middleware):
    """Defers the jobs of a task whose circuit is open; records each attempt's health."""

    def __init__(self, breakers: Breakers) -> None:
        self.breakers = breakers

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        admission = self.breakers.admit(attempt.task)
        if admission.wait > 0:
            return AttemptResult.deferred(admission.wait)
        result = call_next()
        if result.kind != "deferred":
            self.breakers.record(attempt.task, health(result), probe=admission.probe)
        return result
