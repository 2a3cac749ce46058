"""The W3C trace context a job carries (core: no conveyor module above this one).

When the enqueuing code runs inside an active OpenTelemetry span, the span's
context (`traceparent`, `tracestate`) is stored with the job as compact JSON;
events and log lines name the trace by its id. Starting spans around attempts
is `conveyor.observability.tracing`'s business, not this module's. Without the
`opentelemetry-api` package (`pip install 'conveyor[otel]'`) nothing is stored.
"""

from __future__ import annotations

import json

try:
    from opentelemetry import propagate, trace
except ImportError:  # the `otel` extra is not installed
    ENABLED = False
else:
    ENABLED = True


def current_trace_context() -> str | None:
    """The active span's W3C context as JSON, for storing with a job; None outside a span."""
    if not ENABLED:
        return None
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier, separators=(",", ":")) if carrier else None


def trace_id_of(trace_context: dict[str, str] | None) -> str | None:
    """The trace id (32 hex digits) in a stored `traceparent`, for log lines."""
    if not trace_context:
        return None
    parent = trace_context.get("traceparent", "")
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


__all__ = ["ENABLED", "current_trace_context", "trace_id_of"]
