"""The detectors as Prometheus metrics: `conveyor_detector_firing{detector}` (1 or 0) and
`conveyor_detector_findings{detector}`, computed at scrape time and cached for half the
detectors' interval (so a fleet of workers scraped every 15 s costs the database a few
small queries per worker and interval). `conveyor slo rules` alerts on them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor.incidents.detectors import DetectorResult


class DetectorCollector(Collector):
    def __init__(self, detect: Callable[[], list[DetectorResult]], *, cache: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._detect = detect
        self._cache = cache
        self._clock = clock
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._results: list[DetectorResult] = []

    def _read(self) -> list[DetectorResult]:
        with self._lock:
            now = self._clock()
            if now - self._at >= self._cache:
                self._results = self._detect()
                self._at = now
            return self._results

    def collect(self) -> Iterator[GaugeMetricFamily]:
        results = self._read()
        firing = GaugeMetricFamily(
            "conveyor_detector_firing",
            "1 while a silent-failure detector fires (see `conveyor doctor`).", labels=["detector"])
        findings = GaugeMetricFamily(
            "conveyor_detector_findings", "What each detector found (queues, workers...).",
            labels=["detector"])
        for r in results:
            if r.error is None:
                firing.add_metric([r.name], 1.0 if r.firing else 0.0)
                findings.add_metric([r.name], float(len(r.findings)))
        yield firing
        yield findings


__all__ = ["DetectorCollector"]
