"""Scale out: two replicas of every service (two edges too) on a real nats-server,
four conversations at once with real LibriVox speech, two clients per edge.

Every conversation gets its transcript and a spoken reply, and every replica of
every service did part of the work: the edges answered two offers each, stt and
turns replicas were each assigned sessions, llm and tts replicas each took work
from their queue groups. One stack start, one turn per conversation: on two
shared cores with two LLMs this is slow, so the timeouts are generous.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from proto import messages as m
from proto.subjects import LLM_REQUEST
from services.common.bus import Bus
from services.edge.ice import use_host_addresses
from stack.process_group import SERVICES
from tests.e2e_turn import Turn, greeted, say_and_wait_for_reply
from tests.replica_stack import ReplicaStack
from tests.support import librivox_utterances
from tests.webrtc_client import EdgeClient

pytestmark = pytest.mark.e2e

REPLICAS = dict.fromkeys(SERVICES, 2)
# Two LLMs, two Whispers, two voices and four calls share two cores: one thread each,
# short replies, fewer partials, and a reply may take long to start.
ENV = {
    "LLM_THREADS": "1",
    "STT_CPU_THREADS": "1",
    "LLM_MAX_TOKENS": "40",
    "TURNS_MAX_TOKENS": "40",
    "TURNS_REPLY_TIMEOUT_S": "300",
    "STT_PARTIAL_INTERVAL_MS": "1500",
    "EDGE_CONNECT_TIMEOUT_S": "60",
}
TURN_WITHIN = 420.0
# Utterances Whisper tiny.en hears reliably ("ill-disposed" in 0880 can send it into a loop).
SPOKEN = ("0870", "0890", "0930", "0870")


@pytest.fixture(scope="module")
def stack() -> Iterator[ReplicaStack]:
    process = ReplicaStack(REPLICAS, ENV).start(timeout=900)
    assert len(process.children()) == 1 + 2 * len(SERVICES)  # nats-server and ten services
    yield process
    leftover = process.stop()
    assert not leftover, f"Ctrl-C left processes running: {leftover}"


async def converse(client: EdgeClient, utterance_name: str) -> Turn:
    utterance = next(u for u in librivox_utterances() if u.name.endswith(utterance_name))
    await greeted(client, within=TURN_WITHIN)
    return await say_and_wait_for_reply(client, utterance, within=TURN_WITHIN)


async def test_four_conversations_over_two_replicas_of_every_service(stack: ReplicaStack) -> None:
    use_host_addresses(["127.0.0.1"])
    clients = [EdgeClient(stack.url("edge", i % 2)) for i in range(4)]  # two per edge
    try:
        for client in clients:
            await client.connect(within=60)
        started = time.monotonic()
        turns = await asyncio.gather(*(converse(c, name) for c, name in zip(clients, SPOKEN, strict=True)))
        print(f"\nfour conversations in {time.monotonic() - started:.0f} s")
    finally:
        for client in clients:
            await client.close()
    for turn in turns:
        print(f"heard {turn.heard!r} (WER {turn.wer:.2f}) -> replied {turn.replied!r}")
    for turn in turns:
        assert turn.heard.strip() and turn.wer <= 0.5, turn
        assert turn.replied.strip() and not turn.interrupted, turn
        assert turn.reply_audio_at is not None, "no reply audio reached the client"

    for service in ("stt", "turns"):
        # The edges give each new session to the least loaded replica they know of.
        assigned = [
            stack.metric(service, i, "voice_agent_sessions_assigned_total", service=service, handover="false")
            for i in (0, 1)
        ]
        print(f"{service} sessions per replica: {assigned}")
        assert sum(assigned) == 4 and all(assigned), (service, assigned)
    for index in (0, 1):
        assert stack.metric("edge", index, "voice_agent_edge_offers_accepted_total") == 2
        chunks = stack.metric(
            "tts", index, "voice_agent_bus_messages_received_total", service="tts", channel="tts.request"
        )
        assert chunks > 0, f"tts replica {index} took no TextChunk"
    await both_llm_replicas_take_requests(stack)


def llm_requests(stack: ReplicaStack, index: int) -> float:
    return stack.metric(
        "llm", index, "voice_agent_bus_messages_received_total", service="llm", channel="llm.request"
    )


async def both_llm_replicas_take_requests(stack: ReplicaStack) -> None:
    """NATS gives each request to a random member of the queue group: after four or so
    requests one replica is left idle about one time in eight. A few one-token requests
    more make sure both have taken work from the group."""
    bus = await Bus.connect(stack.nats_url, "test")
    try:
        for attempt in range(40):
            counts = [llm_requests(stack, i) for i in (0, 1)]
            print(f"llm requests per replica: {counts}")
            if all(counts):
                return
            request = m.LlmRequest(
                session_id=uuid.uuid4().hex,
                turn_id=1,
                seq=attempt,
                messages=[m.ChatMessage("user", "Say yes.")],
                max_tokens=1,
            )
            await bus.publish(LLM_REQUEST, request)
            await asyncio.sleep(1.0)
        raise AssertionError(f"an llm replica never took a request: {counts}")
    finally:
        await bus.close()
