"""OpenTelemetry set-up, W3C trace context in NATS headers, and what spans may say.

Exporters: ``OTEL_TRACES_EXPORTER`` = none | console | otlp | jsonl (a comma list runs
several). Unset, it is otlp when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, none otherwise. OTLP goes over HTTP/protobuf
and the exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables itself (endpoint,
headers, timeout, compression). ``jsonl`` appends one JSON object per finished span to
``VOICE_AGENT_TRACES_FILE`` (the benchmark and the tests read it; several processes may
share the file: each batch is one small O_APPEND write).

Privacy: the user's words and the agent's reply go into span attributes only with
``VOICE_AGENT_TRACE_TEXT=true`` (default false, the same for every service); without it a
span says how long the text was, never what it said. Spans never carry secrets: the bus
records no exception messages, and URLs are logged without their user info.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

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
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import StartupError

log = logging.getLogger(__name__)

TRACE_TEXT_VARIABLE = "VOICE_AGENT_TRACE_TEXT"


class TelemetrySettings(BaseSettings):
    """Unprefixed: one switch for every service, so a trace is all text or none."""

    model_config = SettingsConfigDict(extra="ignore")

    trace_text: bool = Field(default=False, validation_alias=TRACE_TEXT_VARIABLE)


# None until first asked: a process that never called setup_tracing (a test) still
# follows the environment.
_trace_text: bool | None = None


def set_trace_text(enabled: bool) -> None:
    """Allow (or forbid) text in span attributes from now on; setup_tracing calls it."""
    global _trace_text
    _trace_text = enabled


def trace_text() -> bool:
    """True when transcripts and reply text may go into span attributes."""
    if _trace_text is None:
        set_trace_text(_load_settings().trace_text)
    return bool(_trace_text)


def text_attributes(key: str, text: str) -> dict[str, str | int]:
    """Span attributes for ``text``: its length always, the words only when allowed."""
    attributes: dict[str, str | int] = {f"{key}.chars": len(text)}
    if trace_text():
        attributes[key] = text
    return attributes


def loggable_text(text: str, limit: int = 80) -> str:
    """``text`` for a log line under the same rule as spans: the words only when allowed."""
    return repr(text[:limit]) if trace_text() else f"<{len(text)} chars>"


def redact_url(url: str) -> str:
    """``url`` without user name and password (NATS and OpenAI URLs may carry them)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _load_settings() -> TelemetrySettings:
    try:
        return TelemetrySettings()
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise StartupError(f"{TRACE_TEXT_VARIABLE}: {problem}") from None


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
        "links": [f"{link.context.trace_id:032x}/{link.context.span_id:016x}" for link in span.links],
    }


def exporter_kinds() -> list[str]:
    """The exporters the environment asks for, in order; [] for none."""
    value = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not value:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    kinds = [kind.strip() for kind in value.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in ("none", "console", "otlp", "jsonl")]
    if unknown:
        raise StartupError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r} (none, console, otlp, jsonl)"
        )
    return [kind for kind in kinds if kind != "none"]


def _exporter(kind: str) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    if kind == "jsonl":
        return JsonLinesSpanExporter(os.environ.get("VOICE_AGENT_TRACES_FILE", "traces.jsonl"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _describe(kind: str) -> str:
    if kind == "jsonl":
        return f"jsonl to {os.environ.get('VOICE_AGENT_TRACES_FILE', 'traces.jsonl')}"
    if kind == "otlp":
        endpoint = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or "http://localhost:4318 (default)"
        )
        return f"OTLP/HTTP to {redact_url(endpoint)}"
    return kind


def build_provider(service: str, exporters: Sequence[SpanExporter] = ()) -> TracerProvider:
    """A tracer provider naming ``service`` (``voice-agent-<service>``), batching to ``exporters``."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"voice-agent-{service}"}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def setup_tracing(service: str) -> None:
    """Install the process's tracer provider for ``service``; no exporter unless configured.

    The provider flushes its batches when the process exits (the SDK's atexit hook), so
    a service stopped with Ctrl-C or SIGTERM still exports its last spans."""
    set_trace_text(_load_settings().trace_text)
    kinds = exporter_kinds()
    trace.set_tracer_provider(build_provider(service, [_exporter(kind) for kind in kinds]))
    if kinds:
        text = "with" if trace_text() else "without"
        log.info("traces: %s, %s text", ", ".join(_describe(kind) for kind in kinds), text)


def tracer() -> trace.Tracer:
    return trace.get_tracer("voice-agent")


def inject_headers(headers: dict[str, str], context: Context | None = None) -> None:
    propagate.inject(headers, context=context)


def extract_context(headers: dict[str, str] | None) -> Context:
    return propagate.extract(headers or {})
