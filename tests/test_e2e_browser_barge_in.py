"""Barge-in in a real browser: Debian's headless Chromium asks the whole agent
(`python -m stack`) for a story with its fake microphone, then talks over the reply
with a LibriVox sentence. The edge pauses and cuts the reply; the page holds the
agent's voice as soon as the edge's word arrives on the data channel, and lets the
next reply through."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.browser_page import silence, talk, write_microphone_wav
from tests.e2e_audio import synthesized
from tests.e2e_call import CALLS_FOR_A_STORY
from tests.stack_process import StackProcess
from tests.support import librivox_utterances

pytestmark = pytest.mark.e2e
LEAD_IN_S = 6.0  # the greeting plays first
INTO_THE_REPLY_S = 4.0  # after the question: the reply has begun (~1.5-2.5 s) and plays on
TAIL_S = 8.0  # the answer to the interruption
RMS_SPEECH = 0.01
# The ask of tests/test_e2e_barge_in.py: more often a long story from this model.
ASK_FOR_A_STORY = (
    "Please tell me a long story of at least ten sentences about a dragon who learns to bake bread."
)
# What the edge sent before it stopped still crosses Chromium's jitter buffer (~100 ms),
# but nothing of the cut reply may arrive this long after the page held the voice.
DRAINED_MS = 600.0
# The page's hold silences the played track at once; WebAudio still hands the tap what
# was already in its graph (a block or two of 21 ms).
HOLD_SILENT_MS = 45.0


def _onset_after_gap(timeline: list[list[float]], gap_ms: float) -> float | None:
    """The first loud block after the first quiet stretch of ``gap_ms`` that follows
    loud audio: the interruption, after the question and the wait for the reply."""
    loud = [t for t, rms in timeline if rms > RMS_SPEECH]
    return next((b for a, b in pairwise(loud) if b - a >= gap_ms), None)


def _loud(timeline: list[list[float]], start: float, end: float) -> list[float]:
    return [t for t, rms in timeline if start <= t <= end and rms > RMS_SPEECH]


def _reply_playing_at(events: list[dict[str, Any]], onset: float) -> int | None:
    """The reply (not the greeting) whose voice was on when the user began to talk."""
    started = [e for e in events if e.get("type") == "agent_started_speaking" and e["receivedAt"] <= onset]
    if not started or started[-1]["turn_id"] < 1:
        return None
    turn = int(started[-1]["turn_id"])
    over = [e for e in events if e.get("type") == "agent_stopped_speaking" and e["turn_id"] == turn]
    return None if over and over[0]["receivedAt"] <= onset else turn


def _first(events: list[dict[str, Any]], kind: str, after: float, **match: object) -> dict[str, Any] | None:
    return next(
        (
            e
            for e in events
            if e.get("type") == kind
            and e["receivedAt"] >= after
            and all(e.get(k) == v for k, v in match.items())
        ),
        None,
    )


def test_the_page_holds_the_agents_voice_when_the_user_talks_over_it(
    agent_stack: StackProcess, tmp_path: Path
) -> None:
    interruption = next(u for u in librivox_utterances() if u.name.endswith("0870")).pcm16()
    wav = tmp_path / "microphone.wav"
    seconds = write_microphone_wav(
        wav,
        silence(LEAD_IN_S),
        synthesized(ASK_FOR_A_STORY),
        silence(INTO_THE_REPLY_S),
        interruption,
        silence(TAIL_S),
    )
    # The model sometimes answers in one short sentence (CALLS_FOR_A_STORY), over
    # before the interruption: then the page calls again.
    for call in range(CALLS_FOR_A_STORY):
        result = talk(agent_stack, wav, seconds + 2, tmp_path / f"result-{call}.json")
        events = result["events"]
        kinds = [e.get("type") for e in events]
        onset = _onset_after_gap(result["mic"], gap_ms=INTO_THE_REPLY_S * 1000 - 500)
        assert onset is not None, "the interruption was not found at the microphone"
        reply = _reply_playing_at(events, onset)
        if reply is not None:
            break
        print(f"\nno reply was playing when the user talked, calling again: {kinds}")
    else:
        raise AssertionError(f"in {CALLS_FOR_A_STORY} calls no reply was playing when the user talked")

    # The edge decided: it paused the reply and the words cut it (or, when the words
    # came before the decision, cut it at once).
    paused = _first(events, "agent_paused", onset, turn_id=reply)
    cut = _first(events, "interrupted", onset, turn_id=reply)
    assert cut is not None, f"the reply was not cut: {kinds}"
    decided = paused or cut
    # The page held the voice the moment the decision arrived, not when the audio ran out.
    held = _first(events, "voice_held", onset, held=True)
    assert held is not None, f"the page did not hold the agent's voice: {kinds}"
    assert decided["receivedAt"] <= held["receivedAt"] <= cut["receivedAt"] + 5
    # The voice the page plays fell silent at the hold, before the audio ran out...
    after_cut = cut["receivedAt"] + 1000
    played = _loud(result["remote"], held["receivedAt"] + HOLD_SILENT_MS, after_cut)
    assert not played, f"the held voice played on for {len(played)} blocks after the hold"
    # ...and the edge really stopped sending: the track as received (a clone the hold does
    # not touch, which carried the reply up to the onset) fell silent behind it.
    assert _loud(result["received"], onset - 1000, onset), "the received track carried no reply"
    arrived = _loud(result["received"], held["receivedAt"] + DRAINED_MS, after_cut)
    assert not arrived, f"the cut reply still arrived for {len(arrived)} blocks after the hold"

    # The answer to the interruption starts, and the page lets it through.
    answer = _first(events, "agent_started_speaking", cut["receivedAt"])
    assert answer is not None and answer["turn_id"] > reply, f"no answer to the interruption: {kinds}"
    released = _first(events, "voice_held", cut["receivedAt"], held=False)
    assert released is not None and released["receivedAt"] >= answer["receivedAt"]
    assert result["voiceHeld"] is False
