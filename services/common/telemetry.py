"""OpenTelemetry set-up and W3C trace context in NATS headers.

Exporter: ``OTEL_TRACES_EXPORTER`` = none (default) | console | otlp; setting
``OTEL_EXPORTER_OTLP_ENDPOINT`` implies otlp.
"""

from __future__ import annotations

import os

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter


def _exporter() -> SpanExporter | None:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").lower()
    if not kind:
        kind = "otlp" if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
    if kind == "console":
        return ConsoleSpanExporter()
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def setup_tracing(service: str) -> None:
    """Install a tracer provider for ``service``; no exporter unless configured."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"voice-agent-{service}"}))
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def tracer() -> trace.Tracer:
    return trace.get_tracer("voice-agent")


def inject_headers(headers: dict[str, str], context: Context | None = None) -> None:
    propagate.inject(headers, context=context)


def extract_context(headers: dict[str, str] | None) -> Context:
    return propagate.extract(headers or {})
