"""Tracing set-up and the edge's turn spans, in process: what the setting lets spans say,
which exporter the environment picks (a real OTLP/HTTP export to a local receiver), and
the shape of a user turn's spans at the edge (TurnTraces) with an in-memory exporter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proto import messages as m
from services.common import telemetry
from services.common.bus import wants_span
from services.common.errors import StartupError
from services.common.telemetry import exporter_kinds, redact_url
from services.edge.latency import PLAYOUT_SPAN, USER_TURN_SPAN, TurnTraces
from tests.support import free_port
from tests.tracing_support import by_name, spans, texts, trace_text  # noqa: F401  (fixtures)

EXPORTER_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in (*EXPORTER_VARIABLES, telemetry.TRACE_TEXT_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(telemetry, "_trace_text", None)  # read the environment again
    yield monkeypatch


# --- the setting --------------------------------------------------------------


@pytest.mark.parametrize(("value", "allowed"), [(None, False), ("false", False), ("true", True), ("1", True)])
def test_trace_text_is_off_unless_the_environment_allows_it(
    clean_environment: pytest.MonkeyPatch, value: str | None, allowed: bool
) -> None:
    if value is not None:
        clean_environment.setenv(telemetry.TRACE_TEXT_VARIABLE, value)
    assert telemetry.trace_text() is allowed
    attributes = telemetry.text_attributes("voice_agent.transcript", "call my bank")
    assert attributes["voice_agent.transcript.chars"] == 12
    assert ("voice_agent.transcript" in attributes) is allowed
    assert ("call my bank" in telemetry.loggable_text("call my bank")) is allowed


def test_a_bad_trace_text_value_is_a_one_line_start_up_error(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv(telemetry.TRACE_TEXT_VARIABLE, "perhaps")
    with pytest.raises(StartupError, match="VOICE_AGENT_TRACE_TEXT"):
        telemetry.setup_tracing("test")


def test_urls_lose_their_credentials() -> None:
    assert redact_url("nats://agent:s3cret@nats.internal:4222") == "nats://***@nats.internal:4222"
    assert redact_url("https://user:key@api.example/v1/chat") == "https://***@api.example/v1/chat"
    assert redact_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318"


# --- exporters ----------------------------------------------------------------


def test_an_otlp_endpoint_alone_turns_otlp_export_on(clean_environment: pytest.MonkeyPatch) -> None:
    assert exporter_kinds() == []
    clean_environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert exporter_kinds() == ["otlp"]
    clean_environment.setenv("OTEL_TRACES_EXPORTER", "none")  # an explicit choice wins
    assert exporter_kinds() == []
    clean_environment.setenv("OTEL_TRACES_EXPORTER", "otlp,jsonl")
    assert exporter_kinds() == ["otlp", "jsonl"]
    clean_environment.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(StartupError, match="zipkin"):
        exporter_kinds()


async def test_spans_reach_an_otlp_http_receiver(clean_environment: pytest.MonkeyPatch) -> None:
    """The exporter telemetry builds from OTEL_EXPORTER_OTLP_ENDPOINT posts protobuf to
    <endpoint>/v1/traces, with the service's name as resource."""
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: web.Request) -> web.Response:
        body = ExportTraceServiceRequest()
        body.ParseFromString(await request.read())
        received.append(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        clean_environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        (kind,) = exporter_kinds()
        exporter = telemetry._exporter(kind)
        assert isinstance(exporter, OTLPSpanExporter)
        provider = telemetry.build_provider("stt", [exporter])
        with provider.get_tracer("test").start_as_current_span("stt decode"):
            pass
        # The exporter's HTTP call blocks: run the flush beside the receiver's loop.
        assert await asyncio.to_thread(provider.force_flush, 10_000)
        await asyncio.to_thread(provider.shutdown)
    finally:
        await runner.cleanup()
    (request,) = received
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "voice-agent-stt"
    assert [s.name for scope in resource_spans.scope_spans for s in scope.spans] == ["stt decode"]


def test_jsonl_records_carry_links(spans: InMemorySpanExporter) -> None:  # noqa: F811
    tracer = telemetry.tracer()
    first = tracer.start_span("user turn")
    first.end()
    second = tracer.start_span("user turn", links=[trace.Link(first.get_span_context())])
    second.end()
    record = telemetry._span_record(spans.get_finished_spans()[-1])
    context = first.get_span_context()
    assert record["links"] == [f"{context.trace_id:032x}/{context.span_id:016x}"]


# --- volume: which messages get spans -----------------------------------------


def test_runs_of_messages_get_a_span_for_their_first_only() -> None:
    ids: dict[str, Any] = {"session_id": "s", "turn_id": 1, "seq": 1}
    assert not wants_span(m.AudioFrame(**ids, pcm=b"\0\0"))
    assert wants_span(m.LlmToken(**ids, text="Hi", index=0))
    assert not wants_span(m.LlmToken(**ids, text=" there", index=1))
    chunk: dict[str, Any] = {"chunk_index": 2, "pcm": b"", "sample_rate": 22050}
    assert wants_span(m.AudioChunk(**ids, **chunk, part=0))
    assert not wants_span(m.AudioChunk(**ids, **chunk, part=1))
    assert wants_span(m.SpeechEnded(**ids, at=1.0, decided_at=1.3))


# --- the edge's spans of a turn -------------------------------------------------


class Edge:
    """Publishes like EdgeSession._publish: each message inside traces.publishing."""

    def __init__(self) -> None:
        self.traces = TurnTraces("sess")
        self.headers: list[dict[str, str]] = []  # what each "publish" would carry

    def publish(self, message: object) -> None:
        with self.traces.publishing(message):
            headers: dict[str, str] = {}
            telemetry.inject_headers(headers)
            self.headers.append(headers)

    def audio_arrives(self, turn_id: int, sender: trace.Span) -> None:
        """An AudioChunk handler running in its delivery span's context."""
        token = otel_context.attach(trace.set_span_in_context(sender))
        try:
            self.traces.reply_audio(turn_id)
        finally:
            otel_context.detach(token)


def ids(turn_id: int) -> dict[str, Any]:
    return {"session_id": "sess", "turn_id": turn_id, "seq": 0}


def test_a_user_turn_is_one_root_and_its_playout_hangs_under_the_first_audio(
    spans: InMemorySpanExporter,  # noqa: F811
    trace_text: bool,  # noqa: F811
) -> None:
    edge = Edge()
    now = time.time()
    edge.publish(m.SpeechStarted(**ids(1), at=now - 1.0))
    edge.publish(m.AudioFrame(**ids(1), pcm=b"\0\0"))
    edge.publish(m.SpeechEnded(**ids(1), at=now - 0.4, decided_at=now, frame_count=30))
    (root,) = by_name(spans.get_finished_spans(), USER_TURN_SPAN)
    assert root.parent is None
    assert root.start_time == int((now - 1.0) * 1e9)  # the first voiced moment
    attributes = root.attributes or {}
    assert attributes["voice_agent.turn_id"] == 1 and attributes["voice_agent.end_of_turn_ms"] == 400.0
    assert attributes["voice_agent.speech_ended_at"] == now - 0.4
    # the frame (no span of its own) and the VAD messages carried the root's context
    root_id = f"{root.context.span_id:016x}"
    assert all(root_id in h["traceparent"] for h in edge.headers)

    delivery = telemetry.tracer().start_span("audio.out process")  # the first AudioChunk's
    edge.audio_arrives(1, delivery)
    edge.audio_arrives(1, telemetry.tracer().start_span("a later piece"))
    edge.publish(m.PlayoutStarted(**ids(1), at=now + 0.1))
    edge.publish(
        m.TurnLatency(
            **ids(1), stt_final_ms=1, llm_first_token_ms=2, tts_first_audio_ms=3, first_audio_out_ms=4
        )
    )
    assert not by_name(spans.get_finished_spans(), PLAYOUT_SPAN)  # still playing
    edge.publish(m.PlayoutFinished(**ids(1), heard_text="Sure, here it is.", interrupted=False, at=now + 2))
    (playout,) = by_name(spans.get_finished_spans(), PLAYOUT_SPAN)
    assert playout.parent is not None and playout.parent.span_id == delivery.get_span_context().span_id
    assert playout.context.trace_id == delivery.get_span_context().trace_id
    # PlayoutStarted, TurnLatency and PlayoutFinished went out inside the playout span
    playout_id = f"{playout.context.span_id:016x}"
    assert all(playout_id in h["traceparent"] for h in edge.headers[-3:])
    assert (playout.attributes or {})["voice_agent.heard_text.chars"] == 17
    assert texts(playout) == ({"voice_agent.heard_text": "Sure, here it is."} if trace_text else {})


def test_a_continued_utterance_ends_its_root_and_links_the_next(spans: InMemorySpanExporter) -> None:  # noqa: F811
    edge = Edge()
    now = time.time()
    edge.publish(m.SpeechStarted(**ids(1), at=now - 2))
    edge.publish(m.SpeechPaused(**ids(1), at=now - 1.5, decided_at=now - 1.48))
    edge.publish(m.Cancel(**ids(1), reason="speech resumed"))  # in turn 1's trace
    edge.publish(m.SpeechStarted(**ids(2), at=now - 1.2, continues=1))
    (first,) = by_name(spans.get_finished_spans(), USER_TURN_SPAN)
    assert (first.attributes or {})["voice_agent.outcome"] == "continued"
    assert f"{first.context.span_id:016x}" in edge.headers[2]["traceparent"]
    edge.publish(m.SpeechEnded(**ids(2), at=now - 0.5, decided_at=now - 0.1))
    second = by_name(spans.get_finished_spans(), USER_TURN_SPAN)[1]
    assert second.context.trace_id != first.context.trace_id
    assert [link.context.span_id for link in second.links] == [first.context.span_id]


def test_closing_the_session_ends_what_is_open(spans: InMemorySpanExporter) -> None:  # noqa: F811
    edge = Edge()
    edge.publish(m.SpeechStarted(**ids(1), at=time.time()))
    edge.publish(m.PlayoutStarted(**ids(0), at=time.time()))  # the greeting, playing
    edge.traces.close()
    finished = spans.get_finished_spans()
    assert {s.name for s in finished} == {USER_TURN_SPAN, PLAYOUT_SPAN}
    assert all((s.attributes or {})["voice_agent.outcome"] == "session closed" for s in finished)
