"""Service level objectives, their indicators, error budgets and burn rates.

An objective is declared in code::

    app.slo("emails", task=send_email, success=0.999, wait_p99=5.0, window="30d")

and yields up to two SLIs, both read from the backend's durable per-minute
aggregates (never from a process's memory):

- `success`: of the jobs that finished (counted when they finish), the fraction
  that ended `succeeded`. A job that succeeded after retries is good; a job that
  ended `dead` (exhausted, not retryable, discarded, lost its last lease) is bad.
  Retried attempts are neither: the job has not finished.
- `wait`: of the attempts that finished, the fraction that started at most
  `wait_p99` seconds after their run_at (so 99% of starts within the target).

The error budget is `1 - target`. The burn rate over a window is the error ratio
in that window divided by the budget: 1 spends the budget exactly over the SLO
window, 14.4 spends 2% of a 30-day budget in one hour.

Alerts follow the Google SRE workbook's multiwindow, multi-burn-rate table
(chapter 5, "Alerting on SLOs"). Each rule fires when both its long and its
short window burn faster than the threshold; the short window makes the alert
stop soon after the burn stops. Thresholds are budget fractions, so they scale
with the SLO window (for 30 days they are the workbook's 14.4, 6 and 1):

| severity | long window | short window | budget spent in the long window | burn (30d) |
|----------|-------------|--------------|---------------------------------|------------|
| page     | 1h          | 5m           | 2%                              | 14.4       |
| page     | 6h          | 30m          | 5%                              | 6          |
| ticket   | 3d          | 6h           | 10%                             | 1          |

Windows are whole minutes: a window of N minutes reads the N+1 minute rows that
overlap it (the current, partial minute included). No traffic means no burn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from conveyor.backends.base import WAIT_BUCKETS, JobStats, StatsQuery
from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from conveyor.backends.base import StatsStore

SLIKind = Literal["success", "wait"]
Severity = Literal["page", "ticket"]


@dataclass(frozen=True, slots=True)
class BurnRule:
    severity: Severity
    long_window: float
    short_window: float
    budget_fraction: float
    """Share of the whole budget the long window may spend before the rule fires."""

    def threshold(self, slo_window: float) -> float:
        return self.budget_fraction * slo_window / self.long_window

    @property
    def name(self) -> str:
        return f"{format_window(self.long_window)}/{format_window(self.short_window)}"


BURN_RULES: tuple[BurnRule, ...] = (
    BurnRule("page", 3600.0, 300.0, 0.02),
    BurnRule("page", 6 * 3600.0, 1800.0, 0.05),
    BurnRule("ticket", 3 * 86400.0, 6 * 3600.0, 0.10),
)
"""The SRE workbook's recommended rules (see the module docstring)."""

BURN_WINDOWS: tuple[float, ...] = (300.0, 1800.0, 3600.0, 6 * 3600.0, 3 * 86400.0)
"""Every window a rule reads: 5m, 30m, 1h, 6h, 3d."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_window(value: str | float | timedelta) -> float:
    """`"30d"`, `"6h"`, `"90m"`, a timedelta or seconds -> seconds."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ConfigurationError(
                f"window {value!r} is not a duration: write e.g. '30d', '7d', '12h' or '90m'"
            )
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(f"window must be a duration like '30d', got {value!r}")
    if not math.isfinite(seconds) or seconds < 3600:
        raise ConfigurationError(f"an SLO window must be at least 1h, got {value!r}")
    return seconds


def format_window(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Objective:
    """One declared objective (see `Conveyor.slo`)."""

    name: str
    task: str | None
    """The task name it covers; None for every task (of `queue`, when given)."""
    queue: str | None
    success: float | None
    """Target fraction of finished jobs that succeed, e.g. 0.999."""
    wait_p99: float | None
    """Seconds within which 99% of attempts must start after their run_at."""
    window: float
    """The SLO window, seconds (30 days by default)."""

    WAIT_TARGET = 0.99

    def targets(self) -> list[tuple[SLIKind, float]]:
        found: list[tuple[SLIKind, float]] = []
        if self.success is not None:
            found.append(("success", self.success))
        if self.wait_p99 is not None:
            found.append(("wait", self.WAIT_TARGET))
        return found

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "queue": self.queue,
                "success": self.success, "wait_p99": self.wait_p99, "window": self.window}


def make_objective(
    name: str,
    *,
    task: str | None,
    queue: str | None,
    success: float | None,
    wait_p99: float | None,
    window: str | float | timedelta,
) -> Objective:
    """Validate an objective's settings, with errors that say what to write."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,100}", name):
        raise ConfigurationError(
            f"SLO name {name!r}: use 1-100 letters, digits, '_', '-' or '.' (it labels alerts)"
        )
    if success is None and wait_p99 is None:
        raise ConfigurationError(
            f"SLO {name!r} sets no target: give success=0.999 and/or wait_p99=5.0"
        )
    if success is not None and (
        isinstance(success, bool) or not isinstance(success, int | float)
        or not 0.0 < success < 1.0
    ):
        raise ConfigurationError(
            f"SLO {name!r}: success must be a fraction between 0 and 1 (e.g. 0.999), "
            f"got {success!r}"
        )
    if wait_p99 is not None and float(wait_p99) not in WAIT_BUCKETS:
        raise ConfigurationError(
            f"SLO {name!r}: wait_p99={wait_p99!r} is not one of the wait buckets the backend "
            f"keeps; use one of {', '.join(f'{b:g}' for b in WAIT_BUCKETS)} (seconds)"
        )
    return Objective(
        name=name, task=task, queue=queue,
        success=None if success is None else float(success),
        wait_p99=None if wait_p99 is None else float(wait_p99),
        window=parse_window(window),
    )


# -- reading the indicators ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Counts:
    good: int
    total: int

    @property
    def bad(self) -> int:
        return self.total - self.good

    def error_ratio(self) -> float:
        return self.bad / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class RuleStatus:
    rule: BurnRule
    threshold: float
    long_burn: float
    short_burn: float

    @property
    def firing(self) -> bool:
        return self.long_burn > self.threshold and self.short_burn > self.threshold


@dataclass(frozen=True, slots=True)
class SLIStatus:
    """One SLI of one objective, as of `now`."""

    objective: Objective
    sli: SLIKind
    target: float
    window_counts: Counts
    burn_rates: dict[float, float]
    """Burn rate per window (seconds -> rate) for every window in BURN_WINDOWS."""
    rules: list[RuleStatus] = field(default_factory=list)
    now: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.objective.name}:{self.sli}"

    @property
    def sli_value(self) -> float | None:
        """good / total over the SLO window; None without traffic."""
        counts = self.window_counts
        return counts.good / counts.total if counts.total else None

    @property
    def budget(self) -> float:
        return 1.0 - self.target

    @property
    def budget_left(self) -> float:
        """Fraction of the window's error budget left (1.0 untouched, <0 overspent)."""
        return 1.0 - self.window_counts.error_ratio() / self.budget

    def firing(self, severity: Severity) -> list[RuleStatus]:
        return [r for r in self.rules if r.rule.severity == severity and r.firing]

    def to_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective.name,
            "sli": self.sli,
            "task": self.objective.task,
            "queue": self.objective.queue,
            "target": self.target,
            "wait_threshold_seconds": self.objective.wait_p99 if self.sli == "wait" else None,
            "window": format_window(self.objective.window),
            "good": self.window_counts.good,
            "total": self.window_counts.total,
            "sli_value": self.sli_value,
            "budget_left": self.budget_left,
            "burn_rates": {format_window(w): rate for w, rate in self.burn_rates.items()},
            "firing": sorted({r.rule.severity for r in self.rules if r.firing}),
            "rules": [
                {"severity": r.rule.severity, "windows": r.rule.name,
                 "threshold": r.threshold, "long_burn": r.long_burn,
                 "short_burn": r.short_burn, "firing": r.firing}
                for r in self.rules
            ],
        }


def counts_of(sli: SLIKind, objective: Objective, rows: Sequence[JobStats]) -> Counts:
    if sli == "success":
        good = sum(r.succeeded for r in rows)
        return Counts(good=good, total=good + sum(r.dead for r in rows))
    assert objective.wait_p99 is not None
    index = WAIT_BUCKETS.index(objective.wait_p99)
    return Counts(
        good=sum(r.wait_le[index] for r in rows), total=sum(r.attempts for r in rows)
    )


def read_window(
    backend: StatsStore, objective: Objective, now: float, seconds: float
) -> list[JobStats]:
    since = math.floor((now - seconds) / 60.0) * 60.0
    return backend.stats_read(
        StatsQuery(since=since, until=now + 60.0, task=objective.task, queue=objective.queue)
    )


def evaluate(backend: StatsStore, objectives: Sequence[Objective], now: float) -> list[SLIStatus]:
    """Every SLI of every objective as of `now` (the backend's clock)."""
    statuses: list[SLIStatus] = []
    for objective in objectives:
        windows = sorted({*BURN_WINDOWS, objective.window})
        rows = {w: read_window(backend, objective, now, w) for w in windows}
        for sli, target in objective.targets():
            budget = 1.0 - target
            burn = {w: counts_of(sli, objective, rows[w]).error_ratio() / budget
                    for w in BURN_WINDOWS}
            rules = [
                RuleStatus(rule, rule.threshold(objective.window),
                           burn[rule.long_window], burn[rule.short_window])
                for rule in BURN_RULES
            ]
            statuses.append(SLIStatus(
                objective=objective, sli=sli, target=target,
                window_counts=counts_of(sli, objective, rows[objective.window]),
                burn_rates=burn, rules=rules, now=now,
            ))
    return statuses


__all__ = [
    "BURN_RULES",
    "BURN_WINDOWS",
    "BurnRule",
    "Counts",
    "Objective",
    "RuleStatus",
    "SLIStatus",
    "evaluate",
    "format_window",
    "make_objective",
    "parse_window",
]
