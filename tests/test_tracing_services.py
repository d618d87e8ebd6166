"""Each engine call is one span in the trace of the message that asked for it, and says
the words only when VOICE_AGENT_TRACE_TEXT allows it: stt on a real nats-server (its
decodes run in a worker, outside every handler), llm's Replier and tts's Speaker in
process. Also the queue-depth gauges: a slow handler's backlog on a real subscription,
requests waiting for the model, chunks waiting for synthesis."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import numpy as np
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from proto import messages as m
from proto.subjects import AUDIO_IN, CONTROL, SESSION, TRANSCRIPT, VAD, Channel
from services.common import telemetry
from services.common.bus import Bus
from services.llm.replies import Replier
from services.stt.config import Settings as SttSettings
from services.stt.service import start_with as start_stt
from services.tts.speaker import Speaker
from tests.support import NatsServer, claim
from tests.tracing_support import by_name, spans, texts, trace_text  # noqa: F401  (fixtures)

FRAME = 320  # samples in 20 ms at 16 kHz
WORDS = "please call my bank"


def gauge(service: str, queue: str) -> float | None:
    return REGISTRY.get_sample_value("voice_agent_queue_depth", {"service": service, "queue": queue})


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def span_id(span: ReadableSpan | trace.Span) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    # Its own server: no stt of another test module may answer these sessions.
    server = NatsServer().start()
    yield server
    server.stop()


@pytest.fixture
async def buses(nats: NatsServer) -> AsyncIterator[tuple[Bus, Bus]]:
    service, peer = await Bus.connect(nats.url, "stt"), await Bus.connect(nats.url, "trace-test")
    yield service, peer
    await peer.close()
    await service.close()


# --- stt ----------------------------------------------------------------------


class Echo:
    """A recognizer that hears the same words in any audio."""

    name = "echo"

    def transcribe(self, samples: np.ndarray, *, interim: bool = False) -> str:
        return WORDS


class Turn:
    """Plays the edge for one generation, inside a root span of the test's own."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.session = uuid.uuid4().hex
        self.finals: asyncio.Queue[m.TranscriptFinal] = asyncio.Queue()
        self.root = telemetry.tracer().start_span("user turn", context=Context())

    async def publish(self, channel: Channel, message: msgspec.Struct, traced: bool = True) -> None:
        token = otel_context.attach(trace.set_span_in_context(self.root))
        try:
            await self.bus.publish(channel, message, traced=traced)
        finally:
            otel_context.detach(token)

    def ids(self, turn: int = 1) -> dict[str, Any]:
        return {"session_id": self.session, "turn_id": turn, "seq": self.bus.next_seq(self.session)}

    async def on_transcript(self, message: Any, _subject: str) -> None:
        if isinstance(message, m.TranscriptFinal):
            await self.finals.put(message)

    async def speak(self, frames: int) -> None:
        tone = (np.sin(np.arange(FRAME) / 5) * 8000).astype("<i2").tobytes()
        at = time.time()
        await self.publish(VAD, m.SpeechStarted(**self.ids(), at=at))
        for _ in range(frames):
            await self.publish(AUDIO_IN, m.AudioFrame(**self.ids(), pcm=tone, captured_at=at), traced=False)
        end = at + frames * 0.02
        await self.publish(
            VAD, m.SpeechPaused(**self.ids(), at=end, decided_at=time.time(), frame_count=frames)
        )


async def test_stt_decodes_and_finals_join_the_turns_trace(
    buses: tuple[Bus, Bus],
    spans: InMemorySpanExporter,  # noqa: F811
    trace_text: bool,  # noqa: F811
) -> None:
    stt_bus, peer = buses
    service = await start_stt(stt_bus, SttSettings(partial_interval_ms=60_000, final_wait_ms=50), Echo())
    turn = Turn(peer)
    await peer.subscribe(TRANSCRIPT, turn.on_transcript, session_id=turn.session)
    await peer.flush()
    leases = await claim(peer, "stt", turn.session)  # stt reads only the sessions it owns
    try:
        assert gauge("stt", "decode") == 0
        await turn.speak(frames=25)
        speculative = await asyncio.wait_for(turn.finals.get(), 10)
        assert speculative.speculative and speculative.text == WORDS
        ended = m.SpeechEnded(**turn.ids(), at=time.time(), decided_at=time.time(), frame_count=25)
        await turn.publish(VAD, ended)
        final = await asyncio.wait_for(turn.finals.get(), 10)
        assert not final.speculative and final.text == WORDS
    finally:
        turn.root.end()
        leases.close(turn.session)
        await leases.stop()
        await service.stop()

    trace_id = turn.root.get_span_context().trace_id
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    # One decode (the confirmed final reuses the speculative text), under SpeechPaused's delivery.
    (decode,) = by_name(mine, "stt decode")
    delivery = {span_id(s): s for s in mine}[decode.parent.span_id if decode.parent else 0]
    assert (
        delivery.name == "vad process"
        and (delivery.attributes or {})["voice_agent.message"] == "SpeechPaused"
    )
    assert (decode.attributes or {})["voice_agent.decode_kind"] == "speculative"
    assert texts(decode) == ({"voice_agent.transcript": WORDS} if trace_text else {})
    # Both finals were published in the turn's trace, the confirmed one under SpeechEnded's delivery.
    finals = [s for s in by_name(mine, "transcript publish") if s.kind is trace.SpanKind.PRODUCER]
    assert len(finals) == 2
    parents = {span_id(s): s for s in mine}
    vad = [
        str((parents[s.parent.span_id].attributes or {})["voice_agent.message"]) for s in finals if s.parent
    ]
    assert sorted(vad) == ["SpeechEnded", "SpeechPaused"]
    assert not [
        s
        for s in spans.get_finished_spans()
        if (s.attributes or {}).get("voice_agent.message") == "AudioFrame"
    ]


# --- llm ----------------------------------------------------------------------


class Scripted:
    """A chat engine with a fixed reply; ``gate`` (if given) holds it before the first token."""

    name = "scripted"

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate

    def stream(
        self, messages: list[m.ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        if self.gate is not None:
            self.gate.wait(10)
        yield from ["Sure", ",", " I", " can", " help", "."]

    def close(self) -> None:
        pass


class Recorder:
    """The Bus's publish side: what was sent, in which span."""

    def __init__(self) -> None:
        self.sent: list[tuple[msgspec.Struct, int]] = []

    async def publish(self, channel: Channel, message: msgspec.Struct, *, traced: bool = True) -> None:
        self.sent.append((message, trace.get_current_span().get_span_context().span_id))

    def next_seq(self, session_id: str) -> int:
        return len(self.sent)


def request(session: str, turn: int = 1) -> m.LlmRequest:
    return m.LlmRequest(session_id=session, turn_id=turn, seq=0, messages=[m.ChatMessage("user", WORDS)])


async def test_llm_generation_is_one_span_under_the_request(
    spans: InMemorySpanExporter,  # noqa: F811
    trace_text: bool,  # noqa: F811
) -> None:
    out = Recorder()
    replier = Replier(Scripted(), out)
    with telemetry.tracer().start_as_current_span("llm.request process") as delivery:
        assert replier.submit(request("s1"))
    await eventually(lambda: any(isinstance(message, m.LlmDone) for message, _ in out.sent))
    await replier.close()
    (generate,) = by_name(spans.get_finished_spans(), "llm generate")
    assert generate.parent is not None and generate.parent.span_id == span_id(delivery)
    assert {span for _, span in out.sent} == {span_id(generate)}  # tokens, chunks, done inside it
    attributes = generate.attributes or {}
    assert attributes["voice_agent.tokens"] == 6 and attributes["voice_agent.reply.chars"] == 17
    assert texts(generate) == ({"voice_agent.reply": "Sure, I can help."} if trace_text else {})


async def test_llm_requests_waiting_for_the_model_are_its_queue() -> None:
    gate = threading.Event()
    replier = Replier(Scripted(gate), Recorder())
    try:
        replier.submit(request("a"))
        replier.submit(request("b"))  # another session: waits for the one model
        await eventually(lambda: replier.waiting == 1)
    finally:
        gate.set()
    await eventually(lambda: replier.waiting == 0)
    await replier.close()


# --- tts ----------------------------------------------------------------------


class Tone:
    """A synthesizer: 0.5 s of tone for any text, after ``gate`` (if given)."""

    sample_rate = 16000

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate

    def synthesize(self, text: str) -> Iterator[bytes]:
        if self.gate is not None:
            self.gate.wait(10)
        yield (np.sin(np.arange(8000) / 5) * 8000).astype("<i2").tobytes()


def chunk(session: str, index: int = 0, text: str = "Sure, I can help.") -> m.TextChunk:
    return m.TextChunk(session_id=session, turn_id=1, seq=0, text=text, index=index, last=True)


async def test_tts_synthesis_is_one_span_under_its_text_chunk(
    spans: InMemorySpanExporter,  # noqa: F811
    trace_text: bool,  # noqa: F811
) -> None:
    published: list[tuple[m.AudioChunk, int]] = []

    async def publish(message: m.AudioChunk) -> None:
        published.append((message, trace.get_current_span().get_span_context().span_id))

    speaker = Speaker(Tone(), publish, lambda _: 0, lambda _: None, max_chunk_ms=200)
    with telemetry.tracer().start_as_current_span("tts.request process") as delivery:
        speaker.submit(chunk("s1"))
    await eventually(lambda: any(message.final_part for message, _ in published))
    await speaker.close()
    (synthesis,) = by_name(spans.get_finished_spans(), "tts synthesize")
    assert synthesis.parent is not None and synthesis.parent.span_id == span_id(delivery)
    assert {span for _, span in published} == {span_id(synthesis)}
    assert (synthesis.attributes or {})["voice_agent.parts"] == len(published) == 3  # 500 ms in 200 ms pieces
    assert texts(synthesis) == ({"voice_agent.text": "Sure, I can help."} if trace_text else {})


async def test_tts_chunks_waiting_for_synthesis_are_its_queue() -> None:
    gate = threading.Event()

    async def publish(message: m.AudioChunk) -> None:
        pass

    speaker = Speaker(Tone(gate), publish, lambda _: 0, lambda _: None)
    try:
        for index in range(3):
            speaker.submit(chunk("s1", index, f"chunk {index}"))
        await eventually(lambda: speaker.pending == 2)  # the first is being synthesized
    finally:
        gate.set()
    await eventually(lambda: speaker.pending == 0)
    await speaker.close()


# --- the bus ------------------------------------------------------------------


async def test_a_slow_handlers_backlog_is_the_subscriptions_queue_depth(nats: NatsServer) -> None:
    consumer, producer = await Bus.connect(nats.url, "queue-test"), await Bus.connect(nats.url, "queue-peer")
    gate = asyncio.Event()

    async def slow(message: Any, _subject: str) -> None:
        await gate.wait()

    subscription = await consumer.subscribe(CONTROL, slow, session_id="q1")
    await consumer.flush()
    try:
        for seq in range(4):
            await producer.publish(CONTROL, m.Cancel(session_id="q1", turn_id=1, seq=seq))
        # one message in the handler, three waiting behind it
        await eventually(lambda: gauge("queue-test", "bus:control") == 3)
        gate.set()
        await eventually(lambda: gauge("queue-test", "bus:control") == 0)
        await subscription.unsubscribe()
        await producer.publish(SESSION, m.SessionEnded(session_id="q1", turn_id=1, seq=9))
        assert gauge("queue-test", "bus:control") == 0
    finally:
        gate.set()
        await producer.close()
        await consumer.close()
