"""One user turn through the whole agent, as a Python WebRTC client sees it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tests.support import Utterance, word_error_rate
from tests.webrtc_client import EdgeClient


@dataclass(frozen=True)
class Turn:
    turn_id: int
    heard: str  # the user's final transcript
    replied: str  # what the edge played of the agent's reply
    interrupted: bool
    wer: float
    reply_audio_at: float | None  # arrival of the reply's first loud frame


async def say_and_wait_for_reply(client: EdgeClient, utterance: Utterance, within: float) -> Turn:
    """Say ``utterance`` and wait until the agent's reply has played.

    The edge may split an utterance at a pause into several generations: the turn
    is the last one the user started, and its reply is the one that plays.
    """
    deadline = time.monotonic() + within
    samples = utterance.pcm16()
    spoken = client.say(samples)
    # The microphone plays it in real time, and aiortc pulls the track late on a loaded
    # machine (four calls over two replicas of every service on a slower 2-core VM had
    # not sent the end a second after it was due); a second after the end was sent, its
    # last frames have reached the edge's VAD.
    await asyncio.wait_for(spoken.sent.wait(), max(0.0, deadline - time.monotonic()))
    assert spoken.ended_at is not None
    await asyncio.sleep(max(0.0, spoken.ended_at + 1.0 - time.time()))
    turn = max(e["turn_id"] for e in client.events if e["type"] == "user_started_speaking")
    final = await client.wait_for_event(
        "transcript", within=deadline - time.monotonic(), where=lambda e: e["final"] and e["turn_id"] == turn
    )
    stopped = await client.wait_for_event(
        "agent_stopped_speaking", within=deadline - time.monotonic(), where=lambda e: e["turn_id"] == turn
    )
    return Turn(
        turn_id=turn,
        heard=final["text"],
        replied=stopped.get("heard_text", ""),
        interrupted=bool(stopped["interrupted"]),
        wer=word_error_rate(utterance.text, final["text"]),
        reply_audio_at=client.first_sound_after(spoken.ended_at),
    )


async def greeted(client: EdgeClient, within: float) -> str:
    """Wait until the greeting has played; the session's id."""
    await client.wait_for_event("agent_stopped_speaking", within=within, where=lambda e: e["turn_id"] == 0)
    return str((await client.wait_for_event("session", within=1))["session_id"])
