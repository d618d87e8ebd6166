"""llm and tts replicas draining on a real nats-server, with stand-in engines: a
draining replica leaves its queue group at once (new work goes to the other replica)
and finishes the work it had accepted before its drain returns."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from proto import messages as m
from proto.subjects import AUDIO_OUT, LLM_REQUEST, LLM_STREAM, TTS_REQUEST
from services.common.bus import Bus
from services.common.runner import Graceful
from services.llm.config import Settings as LlmSettings
from services.llm.service import start_with
from services.tts.config import Settings as TtsSettings
from services.tts.service import serve
from tests.support import NatsServer

SLOW_S = 1.0


class SlowVoice:
    """Half a second of audio per text, a second to make it; ``mark`` tells replicas apart."""

    sample_rate = 16000

    def __init__(self, mark: int) -> None:
        self.mark = mark

    def synthesize(self, text: str) -> Iterator[bytes]:
        time.sleep(SLOW_S)
        yield bytes([self.mark, 0]) * 8000


class SlowModel:
    """Says its name, one word a tenth of a second."""

    def __init__(self, name: str) -> None:
        self.name = name

    def stream(
        self, messages: list[m.ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        for _ in range(10):
            if cancelled.is_set():
                return
            time.sleep(SLOW_S / 10)
            yield f"{self.name} "

    def close(self) -> None:
        pass


class Collector:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.seen: list[Any] = []

    async def record(self, message: Any, _subject: str) -> None:
        self.seen.append(message)

    async def until(self, check: Any, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.02)


@pytest.fixture
async def buses(nats_server: NatsServer) -> AsyncIterator[tuple[Bus, Bus, Collector]]:
    first, second = await Bus.connect(nats_server.url, "a"), await Bus.connect(nats_server.url, "b")
    collector = Collector(await Bus.connect(nats_server.url, "test"))
    yield first, second, collector
    for bus in (first, second, collector.bus):
        await bus.close()


async def test_a_draining_tts_replica_speaks_what_it_took_and_new_chunks_go_elsewhere(
    buses: tuple[Bus, Bus, Collector],
) -> None:
    first_bus, second_bus, test = buses
    await test.bus.subscribe(AUDIO_OUT, test.record)
    first = await serve(first_bus, TtsSettings(), SlowVoice(mark=1))
    assert isinstance(first, Graceful)
    await first_bus.flush()
    session = uuid.uuid4().hex[:16]
    await test.bus.publish(
        TTS_REQUEST, m.TextChunk(session_id=session, turn_id=1, seq=1, text="One.", index=0)
    )
    await test.bus.flush()
    second = await serve(second_bus, TtsSettings(), SlowVoice(mark=2))
    await second_bus.flush()
    await asyncio.sleep(0.2)  # the first replica has taken chunk 0

    started = time.monotonic()
    draining = asyncio.create_task(first.drain(started + 10))
    await asyncio.sleep(0.1)  # out of the queue group
    chunk = m.TextChunk(session_id=session, turn_id=1, seq=2, text="Two.", index=1, last=True)
    await test.bus.publish(TTS_REQUEST, chunk)
    await draining
    assert SLOW_S * 0.8 < time.monotonic() - started < 5  # it waited for chunk 0's audio
    await test.until(lambda: len([a for a in test.seen if a.final_part]) == 2)
    marks = {a.chunk_index: a.pcm[0] for a in test.seen if a.pcm}
    assert marks == {0: 1, 1: 2}  # chunk 0 spoken by the draining replica, chunk 1 by the other
    await first()
    await second()


async def test_a_draining_llm_replica_finishes_its_reply_and_new_requests_go_elsewhere(
    buses: tuple[Bus, Bus, Collector],
) -> None:
    first_bus, second_bus, test = buses
    await test.bus.subscribe(LLM_STREAM, test.record)
    settings = LlmSettings(warmup=False)
    first = await start_with(first_bus, settings, engine=SlowModel("first"))
    assert isinstance(first, Graceful)
    await first_bus.flush()
    session = uuid.uuid4().hex[:16]

    def request(turn: int) -> m.LlmRequest:
        return m.LlmRequest(
            session_id=f"{session}{turn}", turn_id=1, seq=turn, messages=[m.ChatMessage("user", "hi")]
        )

    await test.bus.publish(LLM_REQUEST, request(1))
    await test.bus.flush()
    await test.until(lambda: any(isinstance(t, m.LlmToken) for t in test.seen))  # the first is generating
    second = await start_with(second_bus, settings, engine=SlowModel("second"))
    await second_bus.flush()

    started = time.monotonic()
    draining = asyncio.create_task(first.drain(started + 10))
    await asyncio.sleep(0.1)
    await test.bus.publish(LLM_REQUEST, request(2))
    await draining
    assert SLOW_S * 0.3 < time.monotonic() - started < 5  # it waited for its reply's end
    await test.until(lambda: len([d for d in test.seen if isinstance(d, m.LlmDone)]) == 2)
    done = {d.session_id[-1]: d for d in test.seen if isinstance(d, m.LlmDone)}
    assert not done["1"].cancelled and done["1"].text.startswith("first")
    assert done["2"].text.startswith("second")
    await first()
    await second()
