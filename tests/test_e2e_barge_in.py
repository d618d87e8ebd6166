"""End to end: the user talks over the agent, through the whole stack.

`python -m stack`, a Python WebRTC client speaking real speech, and a Bus on the
stack's NATS watching the services. One conversation asks for a long story, then
over the agent's voice: a burst of noise and an "okay, okay" (neither may cut it),
then a real sentence (it must: the audio stops at the client, and the next
request's history holds only what was played, marked interrupted). A second
stack, whose greeting is uninterruptible, is talked over during the greeting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from bench.barge_in import BACKCHANNEL
from proto import messages as m
from services.edge.ice import use_host_addresses
from tests.bus_watch import BusWatch
from tests.e2e_audio import synthesized, transcribe
from tests.e2e_call import CALLS_FOR_A_STORY, greeted_call
from tests.stack_process import StackProcess
from tests.support import librivox_utterances, word_error_rate
from tests.support import normalize_words as words_of
from tests.webrtc_client import EdgeClient, Spoken

pytestmark = pytest.mark.e2e
OUT_RATE = 48000
# "At least ten sentences" often outweighs the persona's "one or two short sentences"
# (the model alone, temperature 0.6: 1 of 16 stories under 45 words, against 5 of 16
# for "a long bedtime story"; but see CALLS_FOR_A_STORY). No commas: a synthesized
# comma is a pause that can end the turn there. No knight: Whisper hears "night",
# which the model often does not take.
ASK_FOR_A_STORY = (
    "Please tell me a long story of at least ten sentences about a dragon who learns to bake bread."
)
LONG_GREETING = (
    "Hello! I am Ava, your voice assistant. I can answer questions, tell you stories, "
    "and help you think things through. What would you like to talk about today?"
)
INTERRUPT_SPEECH_S = 0.3  # EDGE_INTERRUPT_SPEECH_MS, the default
# About 13 s of voice (~3.5 words a second); the noise, the backchannel and the
# interruption take ~7 s of it.
LONG_STORY_WORDS = 45


def noise_burst(seconds: float = 0.4, level: float = 4000.0) -> np.ndarray:
    """A door slam or a cough's worth of broadband noise, with a fast attack and decay."""
    rng = np.random.default_rng(7)
    n = int(seconds * 16000)
    envelope = np.exp(-np.linspace(0, 6, n))
    return (rng.normal(0, level, n) * envelope).clip(-32768, 32767).astype(np.int16)


def sound_span(client: EdgeClient, start: float, end: float, rms: float = 300.0) -> float:
    """Seconds of loud received audio between ``start`` and ``end`` (arrival times)."""
    loud = [t for t, pcm in client.received if start <= t < end and _rms(pcm) > rms]
    return len(loud) * 0.02


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0


async def _said(spoken: Spoken, within: float = 30.0) -> float:
    """When the client's microphone sent the last sample of ``spoken``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if spoken.ended_at is not None:
            return spoken.ended_at
        await asyncio.sleep(0.02)
    raise TimeoutError("the utterance was not sent")


async def _speak_and_wait_for_reply(client: EdgeClient, text: str, after_turn: int) -> int:
    client.say(synthesized(text))
    final = await client.wait_for_event(
        "transcript", within=40, where=lambda e: e["final"] and e["turn_id"] > after_turn
    )
    turn = int(final["turn_id"])
    await client.wait_for_event("agent_started_speaking", within=60, where=lambda e: e["turn_id"] == turn)
    return turn


def _count(client: EdgeClient, kind: str, turn: int) -> int:
    return sum(1 for e in client.events if e["type"] == kind and e["turn_id"] == turn)


async def _resumed(client: EdgeClient, turn: int, before: int, within: float) -> None:
    deadline = time.monotonic() + within
    while _count(client, "agent_resumed", turn) <= before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reply {turn} was paused and did not resume: {client.events[-6:]}")
        await asyncio.sleep(0.01)


def _agent_text(client: EdgeClient, turn: int) -> tuple[str, bool]:
    """Reply ``turn``'s text so far, and whether it is complete."""
    deltas = [e for e in client.events if e["type"] == "agent_text" and e["turn_id"] == turn]
    return "".join(e["text"] for e in deltas), any(e["final"] for e in deltas)


async def _reply_reaches(client: EdgeClient, turn: int, words: int, within: float = 30.0) -> bool:
    """Whether reply ``turn`` grows to ``words`` words (False: it ended shorter)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text, complete = _agent_text(client, turn)
        if len(text.split()) >= words:
            return True
        if complete:
            return False
        await asyncio.sleep(0.02)
    raise TimeoutError(f"reply {turn} neither reached {words} words nor ended in {within} s")


async def _not_cut_by(client: EdgeClient, turn: int, pcm: np.ndarray, what: str) -> None:
    """Say ``pcm`` over reply ``turn``: the reply is not interrupted and its voice goes on."""
    paused, resumed = _count(client, "agent_paused", turn), _count(client, "agent_resumed", turn)
    await _said(client.say(pcm))
    await asyncio.sleep(1.6)  # the longest a false interruption may pause the agent (1.5 s)
    if _count(client, "agent_paused", turn) > paused:
        # The pause's 1.5 s run from when the edge's VAD hears the user stop, which is
        # the microphone's last sample plus the way to the edge and the VAD's hangover.
        await _resumed(client, turn, resumed, within=2.0)
    listened_from = time.time()
    await asyncio.sleep(1.0)
    heard = [e["text"] for e in client.events if e["type"] == "transcript" and e["turn_id"] > turn]
    interrupted = [e for e in client.events if e["type"] == "interrupted" and e["turn_id"] == turn]
    assert not interrupted, f"{what} cut the agent off: {interrupted}; the user said {heard}"
    stopped = [e for e in client.events if e["type"] == "agent_stopped_speaking" and e["turn_id"] == turn]
    assert not stopped, f"reply {turn} ended during {what}: {stopped}; the user said {heard}"
    # A second of a story holds a pause between sentences at most: most of it is voice.
    voiced = sound_span(client, listened_from, time.time())
    assert voiced > 0.3, f"the agent's voice did not go on after {what}: {voiced:.2f} s in 1 s"


async def test_talking_over_the_agent(agent_stack: StackProcess) -> None:
    short: list[str] = []
    for _ in range(CALLS_FOR_A_STORY):
        async with greeted_call(agent_stack) as (client, watch, sid):
            story = await _speak_and_wait_for_reply(client, ASK_FOR_A_STORY, 0)
            if await _reply_reaches(client, story, LONG_STORY_WORDS):
                await _talk_over(client, watch, sid, story)
                return
            told, _ = _agent_text(client, story)
            print(f"\nthe story is too short for the scenario, calling again: {told!r}")
            short.append(told)
    raise AssertionError(f"{CALLS_FOR_A_STORY} calls told stories under {LONG_STORY_WORDS} words: {short}")


async def _talk_over(client: EdgeClient, watch: BusWatch, sid: str, story: int) -> None:
    """Noise and a backchannel over the story do not cut it; a real sentence does."""
    interruption = {u.name.rsplit("-", 1)[-1]: u for u in librivox_utterances()}["0870"]
    await asyncio.sleep(1.0)
    await _not_cut_by(client, story, noise_burst(), "a burst of noise")
    await _not_cut_by(client, story, synthesized(BACKCHANNEL), "a backchannel")

    spoken = client.say(interruption.pcm16())
    stopped = await client.wait_for_event(
        "agent_stopped_speaking", within=20, where=lambda e: e["turn_id"] == story
    )
    assert stopped["interrupted"] is True, stopped
    assert spoken.started_at is not None
    onset = spoken.started_at
    ended_at = await _said(spoken)
    silent_from = _last_sound(client, onset, ended_at)
    stop_ms = (silent_from - onset) * 1000
    print(f"\ninterrupting speech onset -> agent silent at the client: {stop_ms:.0f} ms")
    # 300 ms of speech to decide, a frame to stop, the client's jitter buffer and
    # the speech's own onset inside the file: well under a second.
    assert silent_from - onset < INTERRUPT_SPEECH_S + 0.7
    assert sound_span(client, silent_from + 0.1, ended_at) == 0.0, "the agent spoke over the user"

    request = await watch.wait_for(m.LlmRequest, sid, within=60, where=lambda r: r.turn_id > story)
    _history_holds_what_was_heard(watch, sid, request, story, stopped["heard_text"])
    _heard_text_matches_the_audio(client, stopped, onset)


def _last_sound(client: EdgeClient, start: float, end: float) -> float:
    loud = [t for t, pcm in client.received if start <= t < end and _rms(pcm) > 300.0]
    assert loud, "no agent audio after the interruption began"
    return loud[-1]


def _history_holds_what_was_heard(
    watch: BusWatch, sid: str, request: m.LlmRequest, story: int, heard: str
) -> None:
    (done,) = watch.all(m.LlmDone, sid, lambda d: d.turn_id == story) or [None]
    assistant = [c for c in request.messages if c.role == "assistant" and c.interrupted]
    assert assistant, f"no interrupted assistant message in {request.messages}"
    said = assistant[-1].content
    assert said == heard.strip(), (said, heard)
    generated = done.text if done is not None else ""
    print(f"heard {len(said.split())} words of {len(generated.split())} generated: {said!r}")
    assert said and words_of(generated).startswith(words_of(said))
    assert len(said.split()) < len(generated.split()), "the whole reply went into the history"


def _heard_text_matches_the_audio(client: EdgeClient, stopped: dict[str, object], onset: float) -> None:
    started = next(
        e
        for e in client.events
        if e["type"] == "agent_started_speaking" and e["turn_id"] == stopped["turn_id"]
    )
    audio = client.audio_between(float(started["received_at"]) - 0.2, onset + 1.0)
    heard_at_client = transcribe(audio, OUT_RATE)
    said = str(stopped["heard_text"])
    print(f"client heard {heard_at_client!r}; edge says it played {said!r}")
    assert word_error_rate(said, heard_at_client) <= 0.6, (said, heard_at_client)


@pytest.fixture(scope="module")
def uninterruptible_greeting_stack() -> Iterator[StackProcess]:
    env = {"TURNS_GREETING_INTERRUPTIBLE": "false", "TURNS_GREETING": LONG_GREETING}
    process = StackProcess(env).start()
    yield process
    process.stop()


async def test_an_uninterruptible_greeting_plays_to_its_end(
    uninterruptible_greeting_stack: StackProcess,
) -> None:
    use_host_addresses(["127.0.0.1"])
    interruption = {u.name.rsplit("-", 1)[-1]: u for u in librivox_utterances()}["0870"]
    client = EdgeClient(uninterruptible_greeting_stack.edge_url)
    await client.connect()
    try:
        started = await client.wait_for_event(
            "agent_started_speaking", within=60, where=lambda e: e["turn_id"] == 0
        )
        await asyncio.sleep(1.0)
        client.say(interruption.pcm16())
        stopped = await client.wait_for_event(
            "agent_stopped_speaking", within=60, where=lambda e: e["turn_id"] == 0
        )
        played = float(stopped["received_at"]) - float(started["received_at"])
        greeting_s = synthesized(LONG_GREETING).size / 16000
        print(f"\ngreeting of {greeting_s:.1f} s played for {played:.1f} s while the user spoke")
        assert stopped["interrupted"] is False
        assert words_of(stopped["heard_text"]) == words_of(LONG_GREETING)
        # Timed between two events as the client received them: a fresh clone on a slower
        # 2-core VM saw 8.4 s of an 8.9 s greeting. A cut at the user's words would show ~1.5 s.
        assert played >= greeting_s - 1.0
        assert not [e for e in client.events if e["type"] == "interrupted"]
        # The user was heard all the same: the next reply answers what they said.
        await client.wait_for_event("transcript", within=40, where=lambda e: e["final"] and e["turn_id"] > 0)
    finally:
        await client.close()
