"""OpenTelemetry set-up and W3C trace context in NATS headers.

Exporter: ``OTEL_TRACES_EXPORTER`` = none (default) | console | otlp | jsonl;
setting ``OTEL_EXPORTER_OTLP_ENDPOINT`` implies otlp. ``jsonl`` appends one JSON
object per finished span to ``VOICE_AGENT_TRACES_FILE`` (the benchmark reads it;
several processes may share the file: each line is one small O_APPEND write).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)


class JsonLinesSpanExporter(SpanExporter):
    """Finished spans as JSON lines in one file, for the benchmark's breakdown."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(_span_record(span), separators=(",", ":")) + "\n" for span in spans)
        with open(self._path, "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


def _span_record(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "service": span.resource.attributes.get("service.name", ""),
        "trace_id": f"{context.trace_id:032x}" if context else "",
        "span_id": f"{context.span_id:016x}" if context else "",
        "parent_id": f"{parent.span_id:016x}" if parent else "",
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": dict(span.attributes or {}),
    }


def _exporter() -> SpanExporter | None:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").lower()
    if not kind:
        kind = "otlp" if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
    if kind == "console":
        return ConsoleSpanExporter()
    if kind == "jsonl":
        return JsonLinesSpanExporter(os.environ.get("VOICE_AGENT_TRACES_FILE", "traces.jsonl"))
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
