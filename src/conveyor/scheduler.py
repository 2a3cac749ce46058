"""Cron: periodic jobs, enqueued once per tick however many workers run.

    @app.cron("*/15 9-17 * * MON-FRI", timezone="Europe/Paris")
    @app.task()
    def sync_prices() -> None: ...

Every worker of the app looks at the schedule once per poll interval and
enqueues each tick that has come, with the idempotency key
`cron:<entry>:<local tick time>`. The database's unique index on that key,
not a leader, makes it one job per tick across any number of workers and
hosts, and a worker that restarts does not fire a tick twice. Ticks are read
off the database's clock. After an outage (every worker down), the latest
missed tick fires once if it is younger than `max_lateness`; older ones are
skipped. Burst workers (`--burst`, `drain()`) do not enqueue periodic jobs.

Expressions are the five classic fields (minute hour day-of-month month
day-of-week) with `*`, `a-b`, lists, `/step`, month and day names, and the
aliases `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly`
(`@annually`). As in Vixie cron, when both day fields are restricted a day
matching either one fires. Daylight saving time: a tick in the hour the clocks
skip does not fire that day; one in the hour that repeats fires once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from conveyor.errors import ConfigurationError
from conveyor.middleware import EnqueueJob

if TYPE_CHECKING:
    from conveyor.job import Job
    from conveyor.task import Task

log = logging.getLogger("conveyor.scheduler")

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name: i for i, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
)}
_WEEKDAYS = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_FieldSpec = tuple[str, int, int, Mapping[str, int]]
"""A field's name, lowest and highest value, and the names it accepts for values."""
_FIELDS: tuple[_FieldSpec, ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed five-field cron expression, matched against local wall-clock minutes."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday (7 is read as Sunday too)."""
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        if not isinstance(text, str):
            raise ConfigurationError(f"a cron schedule is a string, got {text!r}")
        expanded = _ALIASES.get(text.strip().lower(), text)
        parts = expanded.split()
        if len(parts) != len(_FIELDS):
            raise ConfigurationError(
                f"cron {text!r} has {len(parts)} fields; write five: minute hour "
                "day-of-month month day-of-week (e.g. '*/5 * * * *'), or an alias such as "
                "'@daily'"
            )
        values = [
            _parse_field(text, part, spec) for part, spec in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(0 if d == 7 else d for d in values[4])
        return cls(
            text=text,
            minutes=values[0],
            hours=values[1],
            days=values[2],
            months=values[3],
            weekdays=weekdays,
            days_restricted=not parts[2].startswith("*"),
            weekdays_restricted=not parts[4].startswith("*"),
        )

    def matches(self, local: datetime) -> bool:
        if (
            local.minute not in self.minutes
            or local.hour not in self.hours
            or local.month not in self.months
        ):
            return False
        in_days = local.day in self.days
        in_weekdays = local.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        if self.days_restricted:
            return in_days
        if self.weekdays_restricted:
            return in_weekdays
        return True


def _parse_field(text: str, field: str, spec: _FieldSpec) -> frozenset[int]:
    name, lo, hi, names = spec

    def bad(why: str) -> ConfigurationError:
        return ConfigurationError(f"cron {text!r}: {name} field {field!r}: {why}")

    def number(token: str) -> int:
        value = names.get(token.upper())
        if value is None:
            if not token.isdigit():
                known = f" or a name such as {next(iter(names))}" if names else ""
                raise bad(f"{token!r} is not a number{known}")
            value = int(token)
        if not lo <= value <= hi:
            raise bad(f"{value} is out of range {lo}-{hi}")
        return value

    found: set[int] = set()
    for part in field.split(","):
        if not part:
            raise bad("empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise bad(f"step {step_text!r} must be a whole number >= 1")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise bad(f"range {base!r} runs backwards")
        else:
            start = number(base)
            end = hi if slash else start
        found.update(range(start, end + 1, step))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class CronEntry:
    """One periodic job: `task(*args, **kwargs)` at every tick of `expression`."""

    name: str
    task: Task[Any, Any]
    expression: CronExpression
    timezone: ZoneInfo
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    max_lateness: float

    def key(self, tick: float) -> str:
        local = datetime.fromtimestamp(tick, self.timezone)
        return f"cron:{self.name}:{local:%Y-%m-%dT%H:%M}"

    def due(self, since: float, until: float) -> list[float]:
        """The ticks in (since, until], as epoch seconds of whole UTC minutes."""
        first = math.floor(since / 60) * 60 + 60
        return [
            minute
            for minute in range(int(first), int(until) + 1, 60)
            if self.expression.matches(datetime.fromtimestamp(minute, self.timezone))
        ]


def build_entry(
    task: Task[Any, Any],
    schedule: str,
    *,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    name: str | None,
    timezone: str,
    max_lateness: float,
) -> CronEntry:
    """Validate everything a periodic job needs at import time, not at the first tick."""
    expression = CronExpression.parse(schedule)
    try:
        zone = ZoneInfo(timezone)
    except Exception as exc:
        raise ConfigurationError(
            f"cron timezone {timezone!r} is unknown: use an IANA name such as 'UTC' or "
            "'Europe/Paris'"
        ) from exc
    if not math.isfinite(max_lateness) or max_lateness < 60:
        raise ConfigurationError(
            f"max_lateness must be at least 60 seconds (a tick must stay due long enough for "
            f"a worker's pass to see it), got {max_lateness!r}"
        )
    arguments = tuple(args)
    keywords = dict(kwargs or {})
    try:
        task.check_arguments(arguments, keywords)  # the same check enqueue makes
    except Exception as exc:
        raise ConfigurationError(f"cron {schedule!r} for {task.name}: {exc}") from exc
    return CronEntry(
        name=name or task.name,
        task=task,
        expression=expression,
        timezone=zone,
        args=arguments,
        kwargs=keywords,
        max_lateness=float(max_lateness),
    )


class CronScheduler:
    """Enqueues the ticks that have come; one per worker, run from its maintenance pass.

    It needs three things, not the app: the schedules, the app's public enqueue path
    (so periodic jobs pass the enqueue middleware and emit `enqueued` like any other),
    and the database's clock.
    """

    def __init__(
        self,
        schedules: Mapping[str, CronEntry],
        *,
        enqueue: Callable[[list[EnqueueJob]], list[Job[Any]]],
        now: Callable[[], float],
    ) -> None:
        self.schedules = schedules
        self._enqueue = enqueue
        self._now = now
        self._seen_until: dict[str, float] = {}

    def run_due(self) -> int:
        """Enqueue every tick due since the last pass (one round trip); returns new jobs."""
        entries = list(self.schedules.values())
        if not entries:
            return 0
        now = self._now()
        jobs: list[EnqueueJob] = []
        for entry in entries:
            since = max(self._seen_until.get(entry.name, 0.0), now - entry.max_lateness)
            # After an outage, catch up with one job (the latest tick), not one per tick.
            for tick in entry.due(since, now)[-1:]:
                job = entry.task.using(idempotency_key=entry.key(tick)).prepare(
                    *entry.args, **entry.kwargs
                )
                # The key must outlive the window in which another worker could still see
                # this tick as due, or a late worker would fire it again.
                window = max(job.idempotency_window, entry.max_lateness + 120.0)
                jobs.append(replace(job, idempotency_window=window))
        created = 0
        if jobs:
            created = sum(job.created for job in self._enqueue(jobs))
            if created:
                log.info("cron: enqueued %d periodic job(s)", created)
        # Only now: had the insert failed, the next pass would try these ticks again.
        for entry in entries:
            self._seen_until[entry.name] = now
        return created
