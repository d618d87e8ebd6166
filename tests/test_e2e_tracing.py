"""End to end: one user turn is one trace through the five services.

The shared stack (tests/conftest.py) exports its spans as JSON lines. A Python WebRTC
client says one LibriVox utterance; the edge's root span of that turn ("user turn") must
share its trace with spans of edge, stt, turns, llm and tts, every span's parent must be
in the trace, the engine calls must be there (stt decode, llm generate, tts synthesize)
and the reply's playout span too. Runs of messages cost no span each (no AudioFrame span,
one LlmToken span per generation), and with the default VOICE_AGENT_TRACE_TEXT no span
holds the user's words.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bench.traces import SpanIndex, TurnTrace, load_spans, turn_trace
from services.edge.ice import use_host_addresses
from tests.stack_process import StackProcess
from tests.support import librivox_utterances
from tests.webrtc_client import EdgeClient

pytestmark = pytest.mark.e2e
SERVICES = {"edge", "stt", "turns", "llm", "tts"}
ENGINE_SPANS = {"stt decode", "llm generate", "tts synthesize"}


def complete(found: TurnTrace | None) -> bool:
    return (
        found is not None
        and SERVICES <= found.services
        and not found.orphans()
        and any(s.name == "playout" for s in found.spans)
    )


async def wait_for_trace(path: Path, session_id: str, turn_id: int, within: float = 20) -> TurnTrace:
    """The turn's trace once every span is exported (the services batch every 0.5 s)."""
    deadline = time.monotonic() + within
    while True:
        found = turn_trace(SpanIndex(load_spans(path)), session_id, turn_id)
        if complete(found) or time.monotonic() > deadline:
            assert found is not None, f"no root span of turn {turn_id} in {path}"
            return found
        await asyncio.sleep(0.5)


async def converse_one_turn(edge_url: str) -> tuple[str, int, str]:
    """The greeting, then one utterance and its reply: (session, turn, final transcript)."""
    utterance = next(u for u in librivox_utterances() if u.name.endswith("0930"))
    client = EdgeClient(edge_url)
    await client.connect()
    try:
        session = await client.wait_for_event("session", within=30)
        await client.wait_for_event("agent_stopped_speaking", within=60, where=lambda e: e["turn_id"] == 0)
        client.say(utterance.pcm16())
        final = await client.wait_for_event(
            "transcript", within=40, where=lambda e: e["final"] and e["turn_id"] > 0
        )
        turn = int(final["turn_id"])
        await client.wait_for_event("agent_stopped_speaking", within=90, where=lambda e: e["turn_id"] == turn)
    finally:
        await client.close()
    return str(session["session_id"]), turn, str(final["text"])


async def test_a_user_turn_is_one_trace_through_the_five_services(agent_stack: StackProcess) -> None:
    path = Path(agent_stack.env["VOICE_AGENT_TRACES_FILE"])
    use_host_addresses(["127.0.0.1"])
    session, turn, said = await converse_one_turn(agent_stack.edge_url)
    found = await wait_for_trace(path, session, turn)
    spans = found.spans
    names = {s.name for s in spans}
    print(f"turn {turn}: {len(spans)} spans in trace {found.root.trace_id}: {sorted(names)}")

    assert found.root.service == "edge" and found.root.parent_id == ""
    assert found.orphans() == [], [(s.service, s.name, s.message) for s in found.orphans()]
    assert found.services == SERVICES
    assert ENGINE_SPANS <= names
    # The reply came back into the trace: its playout span hangs under the first AudioChunk's delivery.
    playout = next(s for s in spans if s.name == "playout" and s.turn_id == turn)
    delivery = next(s for s in spans if s.span_id == playout.parent_id)
    assert (delivery.service, delivery.kind, delivery.message) == ("edge", "CONSUMER", "AudioChunk")
    # The hops of the turn, each a producer and its consumer in this trace.
    for message, producer, consumer in (
        ("TranscriptFinal", "stt", "turns"),
        ("LlmRequest", "turns", "llm"),
        ("TextChunk", "llm", "tts"),
        ("AudioChunk", "tts", "edge"),
        ("LlmToken", "llm", "edge"),
    ):
        assert any(s.message == message and s.service == producer and s.kind == "PRODUCER" for s in spans)
        assert any(s.message == message and s.service == consumer and s.kind == "CONSUMER" for s in spans)

    # Volume: no span per audio frame, one token span per generation, one audio span per chunk.
    everything = load_spans(path)
    assert not [s for s in everything if s.message == "AudioFrame"]
    generations = [s for s in spans if s.name == "llm generate"]
    tokens = [s for s in spans if s.message == "LlmToken" and s.kind == "PRODUCER"]
    assert 1 <= len(tokens) <= len(generations)
    audio = [s for s in spans if s.message == "AudioChunk" and s.kind == "PRODUCER"]
    assert 1 <= len(audio) <= len([s for s in spans if s.name == "tts synthesize"])

    # Privacy by default: the decode says how long the transcript was, not what it said.
    decode = next(s for s in spans if s.name == "stt decode")
    assert "voice_agent.transcript.chars" in decode.attributes
    assert not any(
        k in s.attributes for s in everything for k in ("voice_agent.transcript", "voice_agent.reply")
    )
    raw = await asyncio.to_thread(path.read_text)
    assert said.strip() and said.strip() not in raw
