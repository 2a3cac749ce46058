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

from typing import TYPE_CHECKING

from conveyor.middleware import Attempt, AttemptNext, AttemptResult, Middleware
from conveyor.tracecontext import ENABLED, current_trace_context, trace_id_of

if TYPE_CHECKING:
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


def wants_span(record: JobRecord | Attempt) -> bool:
    """Whether this attempt runs inside a span: always with a configured provider,
    and without one only to make the job's stored trace context current."""
    return ENABLED and (bool(record.trace_context) or tracing_configured())


class TracingMiddleware(Middleware):
    """Runs each attempt inside its `process {queue}` span (built in, when the
    OpenTelemetry API is installed)."""

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        if not wants_span(attempt):
            return call_next()
        parent = propagate.extract(attempt.trace_context) if attempt.trace_context else None
        tracer = trace.get_tracer(_TRACER_NAME, schema_url=SCHEMA_URL)
        with tracer.start_as_current_span(
            f"process {attempt.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "conveyor",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": attempt.queue,
                "messaging.message.id": str(attempt.id),
                "conveyor.task": attempt.task,
                "conveyor.attempt": attempt.attempt,
                "conveyor.worker": attempt.worker_id,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            result = call_next()
            if result.kind == "error":
                span.set_status(Status(StatusCode.ERROR, result.error_type))
                span.add_event("exception", {
                    "exception.type": result.error_type,
                    "exception.message": result.message,
                    "exception.stacktrace": result.traceback,
                })
            elif result.kind != "ok":
                span.set_attribute("conveyor.outcome", result.kind)
            return result


__all__ = [
    "ENABLED",
    "SEMCONV_VERSION",
    "TracingMiddleware",
    "current_trace_context",
    "trace_id_of",
    "tracing_configured",
    "wants_span",
]
