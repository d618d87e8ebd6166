"""Spans of this test process in memory: the services call ``telemetry.tracer()``, which
reads the process-wide provider, so the tests add an in-memory exporter to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import telemetry


def sdk_provider() -> TracerProvider:
    """The process's SDK provider, installed if nobody did (then set_tracer_provider is
    a no-op for the next caller, whose spans land here too)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    return provider


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of the test; the provider cannot drop a processor, so the
    exporter is shut down afterwards (later spans are refused, silently)."""
    exporter = InMemorySpanExporter()
    sdk_provider().add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture(params=[False, True], ids=["text-off", "text-on"])
def trace_text(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Both settings of VOICE_AGENT_TRACE_TEXT; the environment's rule afterwards."""
    telemetry.set_trace_text(bool(request.param))
    yield bool(request.param)
    telemetry._trace_text = None


def by_name(finished: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def texts(span: ReadableSpan) -> dict[str, object]:
    """The attributes that may hold words (``voice_agent.*`` strings other than ids)."""
    ids = {
        "voice_agent.session_id",
        "voice_agent.message",
        "voice_agent.engine",
        "voice_agent.decode_kind",
        "voice_agent.stt.window",  # what a decode heard: whole, stitched, unanchored, doubtful
    }
    return {
        k: v
        for k, v in (span.attributes or {}).items()
        if k.startswith("voice_agent.") and isinstance(v, str) and k not in ids and not k.endswith("outcome")
    }
