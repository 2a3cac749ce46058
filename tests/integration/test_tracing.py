"""OpenTelemetry: the trace context is stored at enqueue and the worker's execution is
a child span of it, with the messaging conventions; checked with the SDK's in-memory
exporter on both backends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor import Conveyor
from conveyor.events import EventName, JobEvent
from conveyor.testing import drain

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process; every test shares this one.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def test_worker_execution_is_a_child_of_the_enqueuing_span(
    app: Conveyor, spans: InMemorySpanExporter
) -> None:
    @app.task(queue="emails", max_attempts=1)
    def send(ok: bool) -> None:
        if not ok:
            raise ConnectionError("smtp down")

    events: list[JobEvent] = []
    app.events.subscribe(events.append)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /signup") as request:
        good = send.enqueue(True)
        bad = send.enqueue(False)
    untraced = send.enqueue(True)
    assert good.record.trace_context is not None
    assert "traceparent" in good.record.trace_context
    assert untraced.record.trace_context is None

    drain(app, timeout=30, queues=["emails"])
    by_job = {
        s.attributes["messaging.message.id"]: s for s in spans.get_finished_spans()
        if s.name == "process emails"
    }
    assert set(by_job) == {str(good.id), str(bad.id), str(untraced.id)}
    request_context = request.get_span_context()
    for job in (good, bad):
        span = by_job[str(job.id)]
        assert span.context.trace_id == request_context.trace_id
        assert span.parent is not None and span.parent.span_id == request_context.span_id
        assert span.kind is SpanKind.CONSUMER
        assert span.attributes["messaging.system"] == "conveyor"
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.destination.name"] == "emails"
        assert span.attributes["conveyor.task"] == "send"
        assert span.attributes["conveyor.attempt"] == 1
    assert by_job[str(untraced.id)].parent is None  # a root span of its own
    failed = by_job[str(bad.id)]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.events[0].attributes["exception.type"] == "builtins.ConnectionError"
    assert by_job[str(good.id)].status.status_code is not StatusCode.ERROR

    # Job events (and so the JSON logs) carry the trace id.
    trace_id = format(request_context.trace_id, "032x")
    dead = next(e for e in events if e.name is EventName.DEAD)
    assert dead.trace_id == trace_id
    assert next(e for e in events if e.job_id == untraced.id).trace_id is None


def test_enqueue_many_in_a_span_stores_the_context_on_every_job(
    app: Conveyor, spans: InMemorySpanExporter
) -> None:
    @app.task()
    def noop(n: int) -> None: ...

    with trace.get_tracer("test").start_as_current_span("batch"):
        jobs = noop.enqueue_many([(n,) for n in range(3)])
    assert all(j.record.trace_context for j in jobs)


def test_no_span_is_started_until_a_tracer_provider_is_configured() -> None:
    # A fresh process: the global provider can be set only once per process.
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from conveyor.observability.tracing import tracing_configured\n"
        "assert not tracing_configured()\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "assert tracing_configured()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_a_provider_a_traced_job_still_runs_in_its_trace_context(
    tmp_path: Path,
) -> None:
    # A fresh process without a tracer provider: an untraced job runs without a
    # span, a traced one still sees its context (and passes it on to what it enqueues).
    code = f"""
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from conveyor import Conveyor
from conveyor.observability.tracing import current_trace_context, tracing_configured
from conveyor.testing import drain

app = Conveyor("sqlite:///{tmp_path / 'jobs.db'}")

@app.task()
def context() -> str | None:
    return current_trace_context()

assert not tracing_configured()
remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
with trace.use_span(NonRecordingSpan(remote)):
    traced = context.enqueue()
untraced = context.enqueue()
drain(app)
assert f"{{0xABC:032x}}" in traced.wait(5), traced.wait(5)
assert untraced.wait(5) is None
app.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
