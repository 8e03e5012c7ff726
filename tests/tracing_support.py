"""Spans recorded in memory, for tests of what the services' spans say (the SDK allows one
tracer provider per process: it is set once, and each test starts with no spans)."""
from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imageflow import tracing

_exporter: list[InMemorySpanExporter] = []


def _installed() -> InMemorySpanExporter:
    if not _exporter:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _exporter.append(exporter)
    return _exporter[0]


def _spans(monkeypatch, enabled: bool):
    """The exporter, empty, with tracing on or off for the test; emptied again after it."""
    exporter = _installed()
    exporter.clear()
    monkeypatch.setitem(tracing._state, "enabled", enabled)
    yield exporter
    exporter.clear()


@pytest.fixture
def recorded_spans(monkeypatch):
    """Tracing on (as OTEL_TRACES_EXPORTER would turn it on), into an in-memory exporter."""
    yield from _spans(monkeypatch, True)


@pytest.fixture
def tracing_off(monkeypatch):
    """Tracing off, as by default; the exporter shows that nothing was recorded."""
    yield from _spans(monkeypatch, False)


def hex_ids(span) -> tuple[str, str]:
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def parent_id(span) -> str:
    return trace.format_span_id(span.parent.span_id) if span.parent else ""
