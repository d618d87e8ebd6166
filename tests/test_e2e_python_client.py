"""End to end: a Python WebRTC client talks to the whole agent (`python -m stack`).

Real nats-server, the five services as processes, real models, real LibriVox speech.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.edge.ice import use_host_addresses
from tests.e2e_audio import looks_like_english, transcribe
from tests.stack_process import StackProcess
from tests.support import librivox_utterances, metric_value, word_error_rate
from tests.webrtc_client import EdgeClient

pytestmark = pytest.mark.e2e
OUT_RATE = 48000


async def _talk(client: EdgeClient, after_turn: int, speech: object) -> tuple[int, dict[str, float]]:
    """Say ``speech``; its turn is the first final after ``after_turn`` (a pause inside
    the sentence may continue it under a newer turn id: the edge numbers generations)."""
    utterance = speech
    spoken = client.say(utterance.pcm16())  # type: ignore[attr-defined]
    final = await client.wait_for_event(
        "transcript", within=40, where=lambda e: e["final"] and e["turn_id"] > after_turn
    )
    turn = int(final["turn_id"])
    wer = word_error_rate(utterance.text, final["text"])  # type: ignore[attr-defined]
    assert wer <= 0.3, (utterance.text, final["text"])  # type: ignore[attr-defined]
    stopped = await client.wait_for_event(
        "agent_stopped_speaking", within=90, where=lambda e: e["turn_id"] == turn
    )
    assert spoken.ended_at is not None
    first = client.first_sound_after(spoken.ended_at)
    assert first is not None, "no reply audio reached the client"
    reply = client.audio_between(first - 0.1, stopped["received_at"] + 0.3)
    heard = transcribe(reply, OUT_RATE)
    assert looks_like_english(heard), heard
    said = stopped.get("heard_text", "")
    assert said, "the edge reported no text for the reply it played"
    assert word_error_rate(said, heard) <= 0.6, (said, heard)
    latency = await client.wait_for_event("latency", within=5, where=lambda e: e["turn_id"] == turn)
    figures = {
        "voice_to_voice_ms": (first - spoken.ended_at) * 1000,
        "wer": wer,
        **{k: float(v) for k, v in latency.items() if k.endswith("_ms")},
    }
    print(f"turn {turn}: heard {final['text']!r} -> replied {heard!r}: {figures}")
    return turn, figures


async def test_conversation_through_the_whole_stack(agent_stack: StackProcess) -> None:
    use_host_addresses(["127.0.0.1"])
    await _earlier_calls_over(agent_stack)
    completed_before = _completed_turns(agent_stack)
    client = EdgeClient(agent_stack.edge_url)
    await client.connect()
    try:
        greeting = await client.wait_for_event(
            "agent_stopped_speaking", within=60, where=lambda e: e["turn_id"] == 0
        )
        assert greeting["interrupted"] is False
        assert client.first_sound_after(0) is not None, "the greeting was not heard"
        utterances = {u.name.rsplit("-", 1)[-1]: u for u in librivox_utterances()}
        turn, first = await _talk(client, 0, utterances["0890"])
        _, second = await _talk(client, turn, utterances["0870"])
        for figures in (first, second):
            assert figures["voice_to_voice_ms"] > 0
    finally:
        await client.close()
    # the greeting and both replies played to the end
    assert _completed_turns(agent_stack) - completed_before == 3


async def _earlier_calls_over(stack: StackProcess, within: float = 20.0) -> None:
    """The stack is shared: a call an earlier test hung up on may still have a reply
    whose end (completed) is counted after this test's baseline. Wait until turns has
    no session left."""
    deadline = time.monotonic() + within
    while metric_value(stack.metrics("turns"), "voice_agent_active_sessions", service="turns") > 0:
        assert time.monotonic() < deadline, "an earlier test's call never ended"
        await asyncio.sleep(0.2)


def _completed_turns(stack: StackProcess) -> float:
    return metric_value(stack.metrics("turns"), "voice_agent_turns_total", outcome="completed")
