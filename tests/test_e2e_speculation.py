"""End to end: the user pauses mid-sentence, the agent starts a reply speculatively,
the user goes on, and the speculative reply is cancelled unheard.

The whole stack (`python -m stack`), a Python WebRTC client, and a Bus on the
stack's NATS watching what the services say to each other. The user says the
start of a sentence that ends on a trailing word ("My sister and I are planning
a trip to"), pauses, then says the rest ("the mountains next summer."). The
pause is longer than the first silent frame (so stt, llm and tts start on the
first part) and shorter than the silence that ends a turn whose transcript
trails off.

The speech is the project's own voice (piper): a cut into a LibriVox sentence
("... he might") read as trailing off or not depending on how Whisper punctuated
it through Opus, and on a slower 2-core VM it came back unpunctuated in every
call of two runs ("had he married a more amiable woman he might"), which ends a
turn at the plain silence. A last word like "to" trails off however it is
punctuated.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from proto import messages as m
from services.edge.completeness import DEFAULT_TRAILING_WORDS, normalize_words, reading
from services.stt.engine import load_recognizer
from tests.bus_watch import BusWatch
from tests.e2e_audio import looks_like_english, synthesized, transcribe
from tests.e2e_call import greeted_call
from tests.stack_process import StackProcess
from tests.support import joined_with_pause, metric_value
from tests.support import normalize_words as words_of
from tests.webrtc_client import EdgeClient

pytestmark = pytest.mark.e2e
OUT_RATE = 48000
# Whisper ends the first part on "to" (alone, through Opus at 16-32 kbit/s): it trails off.
FIRST_PART = "My sister and I are planning a trip to"
SECOND_PART = "the mountains next summer."
# Heard as ~0.7 s of silence: more than the 20 ms that start the speculation and than the
# ~0.45-0.6 s the speculative final takes on a slow 2-core VM, less than
# EDGE_ENDPOINT_SILENCE_INCOMPLETE_MS (900) that would end the turn there.
PAUSE_S = 0.7
# Calls until one has a speculative reply to cancel (see one_call).
CALLS = 3
TRAILING_WORDS = normalize_words(DEFAULT_TRAILING_WORDS)


def _user_text(request: m.LlmRequest) -> str:
    return request.messages[-1].content if request.messages and request.messages[-1].role == "user" else ""


def _first_part_reads_incomplete(first: np.ndarray) -> str:
    """What stt's recognizer makes of the first part alone (a check on the test's material)."""
    text = load_recognizer("", 1, 0.003, True).transcribe(first.astype(np.float32) / 32768.0)
    assert reading(text, TRAILING_WORDS) == "incomplete", text
    return text


def cancelled_speculation(watch: BusWatch, sid: str) -> m.LlmRequest:
    """The speculative LlmRequest that went out at a pause and was cancelled when the user
    went on: Cancel(N, "speech resumed") after it, then SpeechStarted(N+1, continues=N)."""
    continued = {x.continues: x for x in watch.all(m.SpeechStarted, sid, lambda x: x.continues > 0)}
    cancels = {c.turn_id: c for c in watch.all(m.Cancel, sid, lambda c: c.reason == "speech resumed")}
    speculative = [
        r
        for r in watch.all(m.LlmRequest, sid, lambda r: r.speculative)
        if r.turn_id in continued and r.turn_id in cancels and watch.when(r) < watch.when(cancels[r.turn_id])
    ]
    assert speculative, f"no speculative request was cancelled: {watch.timeline(sid)}"
    discarded = speculative[-1]
    assert watch.when(cancels[discarded.turn_id]) <= watch.when(continued[discarded.turn_id])
    pause = watch.all(m.SpeechPaused, sid, lambda x: x.turn_id == discarded.turn_id)[0]
    held = watch.all(m.AudioChunk, sid, lambda c: c.turn_id == discarded.turn_id)
    request_ms = (watch.when(discarded) - watch.when(pause)) * 1000
    cancel_ms = (watch.when(cancels[discarded.turn_id]) - watch.when(discarded)) * 1000
    print(
        f"speculated on {_user_text(discarded)!r}: request {request_ms:.0f} ms after SpeechPaused, "
        f"cancelled {cancel_ms:.0f} ms later; {len(held)} audio pieces held and dropped"
    )
    return discarded


def reply_request(watch: BusWatch, sid: str, turn: int, discarded: m.LlmRequest) -> m.TranscriptFinal:
    """The reply's request is for ``turn``, whose transcript holds both parts, and its
    history holds nothing of the discarded speculation."""
    assert turn > discarded.turn_id
    (final,) = watch.all(m.TranscriptFinal, sid, lambda f: f.turn_id == turn and not f.speculative)
    heard_words = set(words_of(final.text).split())
    assert heard_words & {"sister", "planning"} and heard_words & {"mountains", "summer"}, final.text
    (request,) = watch.all(m.LlmRequest, sid, lambda r: r.turn_id == turn)
    assert _user_text(request) == final.text
    assert not any(_user_text(discarded) == c.content for c in request.messages[:-1])
    return final


def nothing_heard_before(client: EdgeClient, quiet_from: float, confirmed_at: float) -> float:
    """The first sound after the greeting is the reply, after the end of the turn was
    confirmed: nothing of the cancelled generation reached the client."""
    first_sound = client.first_sound_after(quiet_from)
    assert first_sound is not None and first_sound >= confirmed_at, "audio before the turn ended"
    return first_sound


async def one_call(agent_stack: StackProcess, first: np.ndarray, second: np.ndarray) -> bool:
    """One call of the test; False (nothing asserted) if the edge ended the turn within
    the pause or no speculative request went out within it, so nothing was there to cancel."""
    async with greeted_call(agent_stack) as (client, watch, sid):
        quiet_from = time.time() + 0.3  # the greeting's last frames are on their way
        spoken = client.say(joined_with_pause(first, second, PAUSE_S))
        ended = await watch.wait_for(m.SpeechEnded, sid, within=40)
        turn = ended.turn_id
        continuation = watch.all(m.SpeechStarted, sid, lambda x: x.turn_id == turn and x.continues > 0)
        if not continuation:
            # The edge ended the first part within the pause, as it should if Whisper
            # misheard the last word so that the speculative final reads complete or
            # neither way (250 or 400 ms). Nothing resumed, so nothing was there to cancel.
            finals = watch.all(m.TranscriptFinal, sid, lambda f: f.turn_id == turn and f.speculative)
            print(f"\nturn {turn} ended in the pause (speculative finals {[f.text for f in finals]}): again")
            return False
        paused_turn = continuation[0].continues
        if not watch.all(m.LlmRequest, sid, lambda r: r.turn_id == paused_turn and r.speculative):
            # The user went on before the speculative final came (a partial in flight at
            # the pause can hold it up past the pause on two slow cores): nothing to cancel.
            print(f"\nturn {paused_turn}: speech resumed before its speculative final: again")
            return False
        stopped = await client.wait_for_event(
            "agent_stopped_speaking", within=90, where=lambda e: e["turn_id"] == turn
        )
        await asyncio.sleep(0.3)

        discarded = cancelled_speculation(watch, sid)
        final = reply_request(watch, sid, turn, discarded)
        assert stopped["interrupted"] is False and stopped["heard_text"]
        first_sound = nothing_heard_before(client, quiet_from, watch.when(ended))
        assert not watch.all(m.PlayoutStarted, sid, lambda p: p.turn_id == discarded.turn_id)
        assert not [
            e for e in client.events if e["type"] == "agent_text" and e["turn_id"] == discarded.turn_id
        ]
        reply = transcribe(client.audio_between(first_sound - 0.1, stopped["received_at"] + 0.3), OUT_RATE)
        assert looks_like_english(reply), reply
        row = await client.wait_for_event("user_started_speaking", where=lambda e: e["continues"] > 0)
        assert row["continues"] < row["turn_id"]  # the page keeps one row for the utterance
        assert spoken.ended_at is not None
        latency = await client.wait_for_event("latency", within=5, where=lambda e: e["turn_id"] == turn)
        figures = {k: v for k, v in latency.items() if k.endswith("_ms")}
        voice_to_voice = (first_sound - spoken.ended_at) * 1000
        print(f"turn {turn}: {final.text!r} -> {reply!r}; voice to voice {voice_to_voice:.0f} ms, {figures}")

    return True


async def test_pause_then_more_speech_cancels_the_speculative_reply_unheard(
    agent_stack: StackProcess,
) -> None:
    first, second = synthesized(FIRST_PART), synthesized(SECOND_PART)
    print(f"\nfirst part alone reads: {_first_part_reads_incomplete(first)!r}")
    before = {service: agent_stack.metrics(service) for service in ("edge", "turns")}
    for _ in range(CALLS):
        if await one_call(agent_stack, first, second):
            break
    else:
        pytest.fail(f"no speculative reply to cancel in any of {CALLS} calls (the reasons above)")

    def grew(service: str, name: str, **labels: str) -> float:
        now = agent_stack.metrics(service)
        return metric_value(now, name, **labels) - metric_value(before[service], name, **labels)

    assert grew("edge", "voice_agent_speculations_total", outcome="discarded") >= 1
    assert grew("edge", "voice_agent_speculations_total", outcome="confirmed") >= 1
    assert grew("turns", "voice_agent_turns_total", outcome="discarded") >= 1
    assert grew("turns", "voice_agent_turns_llm_requests_total", speculative="true") >= 1
