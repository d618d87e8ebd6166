"""The turns service in-process against a real nats-server, driven by another Bus."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY

from proto import messages as m
from proto.subjects import CONTROL, LLM_REQUEST, SESSION, STATE, TRANSCRIPT, TTS_REQUEST, VAD
from services.common.bus import Bus
from services.common.probes import Readiness
from services.edge.lease_keeper import LeaseKeeper
from services.turns.config import Settings
from services.turns.service import start
from tests.support import NatsServer, claim

T = TypeVar("T", bound=msgspec.Struct)
TIMEOUT = 5.0


class Driver:
    """Plays edge, stt and llm: publishes their messages, collects what turns sends."""

    def __init__(self, nc: NatsClient, session_id: str) -> None:
        self.nc = nc
        self.bus = Bus(nc, "test-driver")
        self.session_id = session_id
        self.received: asyncio.Queue[msgspec.Struct] = asyncio.Queue()
        self.seen: list[msgspec.Struct] = []  # everything, for assertions on what never came
        self._seq = 0

    async def listen(self) -> None:
        async def collect(message: Any, _subject: str) -> None:
            if message.session_id == self.session_id:
                self.seen.append(message)
                await self.received.put(message)

        for channel in (TTS_REQUEST, LLM_REQUEST, CONTROL, STATE):
            await self.bus.subscribe(channel, collect)
        await self.nc.flush()  # the server has every SUB before anything is published

    async def claim(self) -> LeaseKeeper:
        """As the edge does: turns reads only the sessions assigned to it."""
        return await claim(self.bus, "turns", self.session_id)

    def ids(self, turn: int) -> dict[str, Any]:
        self._seq += 1
        return {"session_id": self.session_id, "turn_id": turn, "seq": self._seq}

    async def next(self, kind: type[T], turn: int) -> T:
        """The next message of ``kind`` for ``turn``, skipping others."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = await self.received.get()
                if isinstance(message, kind) and getattr(message, "turn_id", None) == turn:
                    return message


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def connections(nats_server: NatsServer) -> AsyncIterator[tuple[NatsClient, NatsClient]]:
    service_nc = await nats.connect(nats_server.url)
    driver_nc = await nats.connect(nats_server.url)
    yield service_nc, driver_nc
    await driver_nc.close()
    await service_nc.close()


async def test_service_greets_requests_replies_and_survives_garbage(
    connections: tuple[NatsClient, NatsClient],
) -> None:
    service_nc, driver_nc = connections
    driver = Driver(driver_nc, uuid.uuid4().hex)
    await driver.listen()
    readiness = Readiness()
    settings = Settings.model_validate(
        {"system_prompt": "SYSTEM UNDER TEST", "greeting": "Hi, this is the test greeting."}
    )
    stop = await start(Bus(service_nc, "turns"), readiness, settings)
    await service_nc.flush()  # the service's subscriptions are in place
    readiness.ready = True
    assert readiness.is_ready()
    leases = await driver.claim()

    try:
        await driver.bus.publish(SESSION, m.SessionStarted(**driver.ids(0), started_at=time.time()))
        chunk = await driver.next(m.TextChunk, 0)
        assert (chunk.text, chunk.index, chunk.last) == ("Hi, this is the test greeting.", 0, True)
        assert (await driver.next(m.AgentState, 0)).state == "speaking"
        await eventually(lambda: sample("voice_agent_active_sessions", service="turns") == 1)

        final = m.TranscriptFinal(**driver.ids(1), text="What is the weather like")
        await driver.bus.publish(TRANSCRIPT, final)
        request = await driver.next(m.LlmRequest, 1)
        assert request.messages[0] == m.ChatMessage("system", "SYSTEM UNDER TEST")
        assert request.messages[-1] == m.ChatMessage("user", "What is the weather like")

        labels = {"service": "turns", "channel": "transcript", "reason": "undecodable"}
        before = sample("voice_agent_bus_messages_dropped_total", **labels)
        await driver_nc.publish(TRANSCRIPT.subject(driver.session_id), b"\xc1 not msgpack")
        await eventually(lambda: sample("voice_agent_bus_messages_dropped_total", **labels) == before + 1)

        # Still working: a newer utterance cancels reply 1 and asks for reply 2.
        await driver.bus.publish(TRANSCRIPT, m.TranscriptFinal(**driver.ids(2), text="Never mind"))
        cancel = await driver.next(m.Cancel, 1)
        assert cancel.reason == "superseded"
        request = await driver.next(m.LlmRequest, 2)
        assert [c.content for c in request.messages[-2:]] == ["What is the weather like", "Never mind"]
    finally:
        await leases.stop()
        await stop()
    assert not readiness.is_ready()  # the tick task is gone with the service


async def test_service_speculates_then_discards_or_confirms(
    connections: tuple[NatsClient, NatsClient],
) -> None:
    service_nc, driver_nc = connections
    driver = Driver(driver_nc, uuid.uuid4().hex)
    await driver.listen()
    settings = Settings.model_validate({"system_prompt": "SYSTEM", "greeting_enabled": False})
    stop = await start(Bus(service_nc, "turns"), Readiness(), settings)
    await service_nc.flush()
    leases = await driver.claim()
    speculative = sample("voice_agent_turns_llm_requests_total", service="turns", speculative="true")
    discarded = sample("voice_agent_turns_total", service="turns", outcome="discarded")
    try:
        await driver.bus.publish(VAD, m.SpeechStarted(**driver.ids(1), at=1.0))
        spec = m.TranscriptFinal(**driver.ids(1), text="I would like to", speculative=True)
        await driver.bus.publish(TRANSCRIPT, spec)
        request = await driver.next(m.LlmRequest, 1)
        assert request.speculative and request.messages[-1] == m.ChatMessage("user", "I would like to")

        # The user goes on: the edge cancels 1 and continues the utterance as 2.
        await driver.bus.publish(VAD, m.SpeechStarted(**driver.ids(2), at=2.0, continues=1))
        await eventually(
            lambda: sample("voice_agent_turns_total", service="turns", outcome="discarded") > discarded
        )
        spec = m.TranscriptFinal(**driver.ids(2), text="I would like to book a table.", speculative=True)
        await driver.bus.publish(TRANSCRIPT, spec)
        request = await driver.next(m.LlmRequest, 2)
        assert [c.content for c in request.messages] == ["SYSTEM", "I would like to book a table."]
        await driver.bus.publish(VAD, m.SpeechEnded(**driver.ids(2), at=3.0, decided_at=3.3))
        assert (await driver.next(m.AgentState, 2)).state == "thinking"  # confirmed: the agent is on it
        await driver.bus.publish(
            TRANSCRIPT, m.TranscriptFinal(**driver.ids(2), text="I would like to book a table.")
        )
        await driver.bus.publish(TRANSCRIPT, m.TranscriptFinal(**driver.ids(3), text="For two."))
        request = await driver.next(m.LlmRequest, 3)
        assert not request.speculative
        assert [c.content for c in request.messages] == [
            "SYSTEM",
            "I would like to book a table.",
            "For two.",
        ]
        assert (
            sample("voice_agent_turns_llm_requests_total", service="turns", speculative="true")
            == speculative + 2
        )
        # Reply 2 was superseded by 3; the discarded speculation of 1 was cancelled by the edge, not turns.
        assert [msg.turn_id for msg in driver.seen if isinstance(msg, m.Cancel)] == [2]
    finally:
        await leases.stop()
        await stop()
