"""The operator console's charts: throughput, errors, wait percentiles and run time per
queue and task over a chosen window, read from the durable per-minute aggregates
(`StatsStore.stats_read`), drawn as server-rendered SVG (no chart library, no script).

Percentiles come from the aggregates' histograms (waits: `WAIT_BUCKETS`, run times:
`RUN_BUCKETS`), interpolated within a bucket as Prometheus' `histogram_quantile`
does; a value past the last bound is shown as "> 1h" (waits) or "> 5m" (run times).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.backends.base import RUN_BUCKETS, WAIT_BUCKETS, JobStats, StatsQuery
from conveyor.clock import format_duration
from conveyor.web.problems import Problem

WINDOWS: dict[str, float] = {
    "15m": 900.0, "1h": 3600.0, "6h": 6 * 3600.0, "24h": 86400.0, "7d": 7 * 86400.0,
}
DEFAULT_WINDOW = "1h"
MAX_BARS = 60
PERCENTILES = (0.5, 0.95, 0.99)


def window_seconds(name: str | None) -> tuple[str, float]:
    """The named window (`15m`, `1h`, `6h`, `24h`, `7d`) and its length in seconds."""
    chosen = name or DEFAULT_WINDOW
    if chosen not in WINDOWS:
        raise Problem("malformed-request", f"window must be one of {', '.join(WINDOWS)}, "
                      f"got {chosen[:20]!r}")
    return chosen, WINDOWS[chosen]


@dataclass
class Bucket:
    start: float
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    attempts: int = 0
    wait_le: list[int] = field(default_factory=lambda: [0] * len(WAIT_BUCKETS))
    run_seconds: float = 0.0
    run_le: list[int] = field(default_factory=lambda: [0] * len(RUN_BUCKETS))

    def add(self, row: JobStats) -> None:
        self.succeeded += row.succeeded
        self.retried += row.retried
        self.dead += row.dead
        self.attempts += row.attempts
        for i, n in enumerate(row.wait_le):
            self.wait_le[i] += n
        self.run_seconds += row.run_seconds
        for i, n in enumerate(row.run_le):
            self.run_le[i] += n

    def percentile(self, q: float) -> float | None:
        """The q-quantile of the wait before start."""
        return histogram_quantile(q, self.wait_le, self.attempts)

    def run_percentile(self, q: float) -> float | None:
        return histogram_quantile(q, self.run_le, self.attempts, RUN_BUCKETS)

    @property
    def mean_run(self) -> float | None:
        return self.run_seconds / self.attempts if self.attempts else None


def histogram_quantile(
    q: float, cumulative: Sequence[int], total: int, bounds: Sequence[float] = WAIT_BUCKETS
) -> float | None:
    """The q-quantile of a cumulative histogram over `bounds`; None with no data,
    `math.inf` when it lies past the last bound."""
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            inside = count - lower_count
            if inside <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / inside
        lower_bound, lower_count = bound, count
    return math.inf


def short_seconds(value: float | None, bounds: Sequence[float] = WAIT_BUCKETS) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return f"> {format_duration(bounds[-1])}"
    return format_duration(value)


@dataclass
class Series:
    """Everything one chart page shows for one window and filter."""

    window: str
    since: float
    until: float
    bucket_seconds: float
    buckets: list[Bucket]
    total: Bucket
    by_key: list[tuple[str, str, Bucket]]
    """(queue, task, totals) over the window, busiest first."""


def read_series(
    backend: Any, now: float, window: str, seconds: float, *,
    queue: str | None = None, task: str | None = None,
) -> Series:
    """Read the window's per-minute aggregates once and fold them into at most
    `MAX_BARS` buckets (whole minutes) and per-(queue, task) totals."""
    minutes = max(1, int(seconds // 60))
    per_bucket = max(1, math.ceil(minutes / MAX_BARS))
    bucket_seconds = per_bucket * 60.0
    count = math.ceil(minutes / per_bucket)
    until = math.floor(now / 60.0) * 60.0 + 60.0  # the current minute included
    since = until - count * bucket_seconds
    rows: list[JobStats] = backend.stats_read(
        StatsQuery(since=since, until=until, task=task, queue=queue, per_minute=True)
    )
    buckets = [Bucket(since + i * bucket_seconds) for i in range(count)]
    total = Bucket(since)
    keyed: dict[tuple[str, str], Bucket] = {}
    for row in rows:
        if row.minute is None:
            continue
        index = int((row.minute - since) // bucket_seconds)
        if 0 <= index < count:
            buckets[index].add(row)
        total.add(row)
        keyed.setdefault((row.queue, row.task), Bucket(since)).add(row)
    by_key = sorted(((q, t, b) for (q, t), b in keyed.items()),
                    key=lambda item: (-item[2].attempts, item[0], item[1]))
    return Series(window, since, until, bucket_seconds, buckets, total, by_key)


# -- SVG geometry -------------------------------------------------------------------------
WIDTH, HEIGHT = 600, 120


def _nice_peak(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def stacked_bars(
    buckets: Sequence[Bucket], layers: Sequence[tuple[str, str]], unit: str
) -> dict[str, Any]:
    """Stacked bars, one per bucket: `layers` are (Bucket attribute, css class)."""
    peak = _nice_peak(max((sum(getattr(b, a) for a, _ in layers) for b in buckets), default=0))
    step = WIDTH / max(1, len(buckets))
    bars = []
    for i, bucket in enumerate(buckets):
        y = float(HEIGHT)
        parts = []
        for attr, css in layers:
            value = getattr(bucket, attr)
            if value:
                h = value / peak * HEIGHT
                y -= h
                parts.append({"y": round(y, 2), "h": round(max(h, 1.0), 2), "css": css})
        label = ", ".join(f"{getattr(bucket, a)} {a}" for a, _ in layers)
        bars.append({"x": round(i * step, 2), "w": round(max(step - 1, 1), 2),
                     "parts": parts, "label": label, "start": bucket.start})
    return {"width": WIDTH, "height": HEIGHT, "bars": bars, "peak": peak, "unit": unit,
            "empty": all(not b["parts"] for b in bars)}


def lines(
    buckets: Sequence[Bucket], series: Sequence[tuple[str, str, Any]], unit: str,
    cap: float = WAIT_BUCKETS[-1],
) -> dict[str, Any]:
    """Polylines, one point per bucket that has data: `series` are (name, css, fn(bucket))."""
    values = [[fn(b) for b in buckets] for _, _, fn in series]
    finite = [min(v, cap) for vs in values for v in vs if v is not None]
    peak = _nice_peak(max(finite, default=0.0))
    step = WIDTH / max(1, len(buckets))
    drawn = []
    for (name, css, _), vs in zip(series, values, strict=True):
        points = []
        for i, v in enumerate(vs):
            if v is None:
                continue
            y = HEIGHT - min(v, peak) / peak * HEIGHT
            points.append(f"{round(i * step + step / 2, 2)},{round(y, 2)}")
        drawn.append({"name": name, "css": css, "points": " ".join(points),
                      "dots": [p.split(",") for p in points] if len(points) < 3 else []})
    return {"width": WIDTH, "height": HEIGHT, "lines": drawn, "peak": peak, "unit": unit,
            "empty": not finite}


def charts(series: Series) -> dict[str, Any]:
    b = series.buckets
    return {
        "throughput": stacked_bars(
            b, [("succeeded", "ok"), ("retried", "retry"), ("dead", "dead")], "attempts"),
        "errors": stacked_bars(b, [("retried", "retry"), ("dead", "dead")], "failed attempts"),
        "wait": lines(b, [(f"p{round(q * 100)}", f"p{round(q * 100)}",
                           lambda k, q=q: k.percentile(q)) for q in PERCENTILES], "seconds"),
        "run": lines(b, [(f"p{round(q * 100)}", f"p{round(q * 100)}",
                          lambda k, q=q: k.run_percentile(q)) for q in PERCENTILES], "seconds",
                     cap=RUN_BUCKETS[-1]),
    }


def key_rows(series: Series) -> list[dict[str, Any]]:
    """Per queue and task over the window, for the table under the charts."""
    minutes = max(1.0, (series.until - series.since) / 60.0)
    rows = []
    for queue, task, b in series.by_key:
        rows.append({
            "queue": queue, "task": task, "attempts": b.attempts,
            "per_minute": b.attempts / minutes, "succeeded": b.succeeded,
            "retried": b.retried, "dead": b.dead,
            "error_rate": (b.retried + b.dead) / b.attempts if b.attempts else 0.0,
            "p50": short_seconds(b.percentile(0.5)), "p95": short_seconds(b.percentile(0.95)),
            "p99": short_seconds(b.percentile(0.99)),
            "run_p50": short_seconds(b.run_percentile(0.5), RUN_BUCKETS),
            "run_p95": short_seconds(b.run_percentile(0.95), RUN_BUCKETS),
            "run_p99": short_seconds(b.run_percentile(0.99), RUN_BUCKETS),
            "run_mean": short_seconds(b.mean_run),
        })
    return rows


__all__ = ["WINDOWS", "charts", "histogram_quantile", "key_rows", "read_series",
           "window_seconds"]
