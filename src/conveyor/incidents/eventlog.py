"""The durable log of operational events: what the bus carries, written in batches.

The app subscribes one `EventLog` to its event bus. Publishing an `OpsEvent`
appends it to an in-memory buffer and returns; a background thread (started on
the first event, so a process that publishes nothing has none) writes the
buffer in one statement every `flush_interval` seconds and prunes rows older
than the retention once an hour. Nothing here runs on the job path: job events
are never recorded (the per-minute aggregates count them), and the log's bus
filter says so, so a worker builds no event it would not build anyway.

A feature publishes an `OpsEvent`, or an event dataclass of its own (a
breaker's, a limit's) with `app.events.publish(...)`: its name becomes the
kind, its fields the details. New kinds need no code here. The log does not
listen on the job channel at all (an observer there, even one that wants
nothing, is asked at every attempt: that cost a third of the no-op drain).

When the database does not answer, the buffer is kept (up to `max_buffer`
events, the oldest dropped first and counted in a `eventlog.dropped` event) and
written at the next flush that succeeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Protocol

from conveyor.backends.base import EventInsert
from conveyor.errors import ConveyorError
from conveyor.events import OpsEvent

log = logging.getLogger("conveyor.events.log")

EVENT_RETENTION = 30 * 86400.0
"""Default seconds an operational event is kept."""
MAX_DETAILS = 16_000
"""Characters of JSON details stored per event; larger details are cut down to a note."""
PRUNE_EVERY = 3600.0


class EventWriter(Protocol):
    def event_insert_many(self, events: Sequence[EventInsert]) -> int: ...
    def event_prune(self, older_than: float, limit: int = 10_000) -> int: ...


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_insert(event: OpsEvent) -> EventInsert:
    """An event as the backend stores it: bounded sizes, JSON details (never raising)."""
    kind = _clip(str(event.kind) or "unknown", 100)
    try:
        details = json.dumps(_jsonable(dict(event.details)), allow_nan=False)
    except (TypeError, ValueError) as exc:
        details = json.dumps({"unreadable_details": str(exc)[:200]})
    if len(details) > MAX_DETAILS:
        details = json.dumps({"truncated": True, "size": len(details)})
    return EventInsert(
        kind=kind, subject=_clip(str(event.subject), 1000), actor=_clip(str(event.actor), 1000),
        details_json=details, at=event.at,
    )


class EventLog:
    """Buffers operational events and writes them in batches from a thread of its own."""

    def __init__(
        self,
        writer: Callable[[], EventWriter],
        *,
        retention: float = EVENT_RETENTION,
        flush_interval: float = 0.5,
        max_buffer: int = 10_000,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._writer = writer
        self._now = now
        """Stamps events published without a time (the app's clock), when given."""
        self.retention = retention
        self.flush_interval = flush_interval
        self._buffer: deque[EventInsert] = deque()
        self._max_buffer = max_buffer
        self._dropped = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._pruned_at: float | None = None

    # -- the publishing side (any thread) -------------------------------------------------
    def record(self, event: OpsEvent) -> None:
        entry = to_insert(event)
        if entry.at is None and self._now is not None:
            entry = dataclasses.replace(entry, at=self._now())
        with self._lock:
            if len(self._buffer) >= self._max_buffer:
                self._buffer.popleft()
                self._dropped += 1
            self._buffer.append(entry)
            if self._thread is None or self._pid != os.getpid():
                self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="conveyor-eventlog", daemon=True)
        self._thread.start()

    # -- the writing side -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is buffered now; returns how many events were written."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._buffer)
                self._buffer.clear()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                batch.append(to_insert(OpsEvent(
                    "eventlog.dropped", details={"events": dropped,
                                                 "why": "the database did not answer"})))
            if not batch:
                return 0
            try:
                writer = self._writer()
                written = writer.event_insert_many(batch)
                self._prune(writer)
            except ConveyorError as exc:
                with self._lock:  # keep them for the next flush, the newest winning room
                    room = self._max_buffer - len(self._buffer)
                    kept = batch[-room:] if room > 0 else []
                    self._dropped += len(batch) - len(kept)
                    self._buffer.extendleft(reversed(kept))
                log.warning("could not write %d operational event(s) (%s); trying again",
                            len(batch), exc)
                return 0
            return written

    def _prune(self, writer: EventWriter) -> None:
        import time

        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        writer.event_prune(self.retention)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and write what is left (best effort, bounded by `timeout`)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout)
        self.flush()


__all__ = [
    "EVENT_RETENTION", "EventLog", "EventWriter", "to_insert",
]
