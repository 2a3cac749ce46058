"""OpenTelemetry tracing (optional: `pip install 'conveyor[otel]'`).

When the enqueuing code runs inside an active span, the W3C trace context
(`traceparent`, `tracestate`) is stored with the job (`trace_context`). The
worker runs each attempt inside a `process {queue}` span whose parent is that
context, so the job's execution shows up inside the request that enqueued it,
however long it waited and whichever host ran it. Jobs enqueued outside a
trace get a root `process` span.

Spans follow the OpenTelemetry messaging semantic conventions, which are still
marked "development"; we pin the version we follow (`SEMCONV_VERSION`):

| attribute                      | value                                  |
|--------------------------------|----------------------------------------|
| `messaging.system`             | `conveyor`                             |
| `messaging.operation.type`     | `process`                              |
| `messaging.operation.name`     | `process`                              |
| `messaging.destination.name`   | the queue                              |
| `messaging.message.id`         | the job id                             |
| `conveyor.task`                | the task name                          |
| `conveyor.attempt`             | the attempt number (1 for the first)   |
| `conveyor.worker`              | the worker id                          |

A failed attempt sets the span status to ERROR with the exception type, and
adds an `exception` event. Spans go wherever the process's tracer provider
sends them: configure the OpenTelemetry SDK as usual. Without the
`opentelemetry-api` package installed, none of this costs anything. With it
installed but no tracer provider configured (`trace.set_tracer_provider`, or
`OTEL_PYTHON_TRACER_PROVIDER`), a job enqueued outside a trace runs without a
span (the API's default provider would only hand out a non-recording span
with no context); a job that carries a trace context still runs inside the
API's non-recording span, which makes that context current for the task (so
what it enqueues or calls carries it on). The check is made per attempt, so a
provider configured after the worker started is used from the next attempt on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from conveyor.tracecontext import ENABLED, current_trace_context, trace_id_of
from conveyor.types import JobRecord

if ENABLED:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import (
        NoOpTracerProvider,
        ProxyTracerProvider,
        SpanKind,
        Status,
        StatusCode,
    )

SEMCONV_VERSION = "1.27.0"
"""The messaging semantic conventions these spans follow."""
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
_TRACER_NAME = "conveyor"


def tracing_configured() -> bool:
    """True when a tracer provider that records spans may be set: spans are worth starting.

    The API's defaults (its proxy before any provider is set, or the no-op
    provider) only hand out non-recording spans, which record nothing; see
    `wants_span` for when one is still started.
    """
    if not ENABLED:
        return False
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


def wants_span(record: JobRecord) -> bool:
    """Whether this attempt runs inside a span: always with a configured provider,
    and without one only to make the job's stored trace context current."""
    return ENABLED and (bool(record.trace_context) or tracing_configured())


class AttemptOutcome(Protocol):
    """What a span records of an attempt's outcome (the worker's outcome type has these)."""

    @property
    def kind(self) -> str: ...
    @property
    def error_type(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def traceback(self) -> str: ...


OutcomeT = TypeVar("OutcomeT", bound=AttemptOutcome)


def traced_attempt(
    run: Callable[[JobRecord, Any], OutcomeT], record: JobRecord, child: Any, worker_id: str
) -> OutcomeT:
    """Run `run(record, child)` inside the attempt's `process {queue}` span."""
    if not wants_span(record):
        return run(record, child)
    parent = propagate.extract(record.trace_context) if record.trace_context else None
    tracer = trace.get_tracer(_TRACER_NAME, schema_url=SCHEMA_URL)
    with tracer.start_as_current_span(
        f"process {record.queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "conveyor",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": record.queue,
            "messaging.message.id": str(record.id),
            "conveyor.task": record.task,
            "conveyor.attempt": record.attempt,
            "conveyor.worker": worker_id,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        outcome = run(record, child)
        if outcome.kind == "error":
            span.set_status(Status(StatusCode.ERROR, outcome.error_type))
            span.add_event("exception", {
                "exception.type": outcome.error_type,
                "exception.message": outcome.message,
                "exception.stacktrace": outcome.traceback,
            })
        elif outcome.kind != "ok":
            span.set_attribute("conveyor.outcome", outcome.kind)
        return outcome


__all__ = [
    "ENABLED",
    "SEMCONV_VERSION",
    "AttemptOutcome",
    "current_trace_context",
    "trace_id_of",
    "traced_attempt",
    "tracing_configured",
    "wants_span",
]
