"""The benchmark's reading of the page: speech ends, turns, reply onsets; and the WAV plan."""

from __future__ import annotations

import numpy as np
import pytest

from bench.microphone import SAMPLE_RATE, Placed, Utterance, loud_span, plan
from bench.page_audio import epoch_events, first_loud, page_turns

BLOCK = 5.0
ORIGIN = 1_700_000_000_000.0  # when the WAV started playing in the page (epoch ms)


def timeline(loud: list[tuple[float, float]], until_ms: float) -> list[list[float]]:
    """Blocks of BLOCK ms from ORIGIN; loud (rms 0.1) inside the given spans (ms after ORIGIN)."""
    blocks = []
    t = 0.0
    while t < until_ms:
        rms = 0.1 if any(a <= t < b for a, b in loud) else 0.0
        blocks.append([ORIGIN + t, rms])
        t += BLOCK
    return blocks


def placed(name: str, speech_start_s: float, speech_end_s: float) -> Placed:
    return Placed(name, "", speech_start_s - 0.2, speech_end_s + 0.1, speech_start_s, speech_end_s)


def test_plan_places_utterances_after_the_lead_in_and_between_gaps() -> None:
    voice = np.zeros(SAMPLE_RATE, dtype=np.int16)
    voice[4000:12000] = 8000  # loud from 0.25 s to 0.75 s of the recording
    utterances = [Utterance("a", "x", voice), Utterance("b", "y", voice)]
    mic_plan, samples = plan(utterances, lead_in_s=2.0, gap_s=3.0)
    a, b = mic_plan.utterances
    assert (a.start_s, a.end_s, a.speech_start_s, a.speech_end_s) == (2.0, 3.0, 2.25, 2.75)
    assert (b.start_s, b.speech_end_s) == (6.0, 6.75)
    assert mic_plan.duration_s == 10.0 and samples.size == 10 * SAMPLE_RATE


def test_loud_span_needs_speech() -> None:
    with pytest.raises(ValueError):
        loud_span(np.zeros(SAMPLE_RATE, dtype=np.int16))


def test_first_loud_ignores_what_came_before() -> None:
    remote = timeline([(100, 200), (900, 1000)], 2000)
    assert first_loud(remote, ORIGIN + 300) == ORIGIN + 900
    assert first_loud(remote, ORIGIN + 1500) is None


def test_turns_pair_speech_end_with_the_reply_of_the_edges_turn() -> None:
    plan_ = [placed("u-0001", 1.0, 3.0), placed("u-0002", 10.0, 12.0)]
    # utterance 2 has a pause inside: the edge split it into turns 2 and 3
    mic = timeline([(1000, 3000), (10000, 10800), (11200, 12000)], 20000)
    # reply 1 starts 700 ms after speech end; reply 2 is still playing when utterance 2 ends,
    # and reply 3 starts 900 ms after it
    remote = timeline([(3700, 9000), (11000, 12500), (12900, 14000)], 20000)
    events = epoch_events(
        [
            {"type": "user_stopped_speaking", "turn_id": 1, "receivedAt": 3500},
            {"type": "agent_started_speaking", "turn_id": 1, "receivedAt": 3600},
            {"type": "latency", "turn_id": 1, "first_audio_out_ms": 500, "receivedAt": 3601},
            {"type": "user_stopped_speaking", "turn_id": 2, "receivedAt": 10500},
            {"type": "agent_started_speaking", "turn_id": 2, "receivedAt": 10950},
            {"type": "user_stopped_speaking", "turn_id": 3, "receivedAt": 12450},
            {"type": "agent_started_speaking", "turn_id": 3, "receivedAt": 12880},
        ],
        ORIGIN,
    )
    first, second = page_turns(plan_, mic, remote, events, BLOCK)
    assert (first.turn_id, first.mic_speech_end, first.voice_to_voice_ms) == (1, ORIGIN + 3000, 700.0)
    assert first.latency_event is not None and first.latency_event["first_audio_out_ms"] == 500
    assert second.split_turns == [2, 3] and second.turn_id == 3
    assert second.voice_to_voice_ms == 900.0  # not the old reply still playing at 12000
    assert second.latency_event is None


def test_an_utterance_without_a_reply_has_no_latency() -> None:
    mic = timeline([(1000, 3000)], 8000)
    events = epoch_events([{"type": "user_stopped_speaking", "turn_id": 1, "receivedAt": 3500}], ORIGIN)
    (turn,) = page_turns([placed("u-0001", 1.0, 3.0)], mic, timeline([], 8000), events, BLOCK)
    assert turn.turn_id == 1 and turn.reply_start is None and turn.voice_to_voice_ms is None


def test_utterances_are_found_after_a_microphone_that_fell_seconds_behind() -> None:
    # Planned at 1, 20 and 40 s; the fake microphone stalled and played the second 2.5 s
    # late and the third 4 s late: far outside any fixed window around the plan.
    plan_ = [placed("u-1", 1.0, 3.0), placed("u-2", 20.0, 22.0), placed("u-3", 40.0, 42.0)]
    mic = timeline([(1000, 3000), (22500, 23500), (23900, 24500), (44000, 46000)], 50000)
    events = epoch_events(
        [
            {"type": "user_stopped_speaking", "turn_id": n, "receivedAt": at}
            for n, at in ((1, 3200), (2, 24700))
        ],
        ORIGIN,
    )
    first, second, third = page_turns(plan_, mic, timeline([], 50000), events, BLOCK)
    assert (first.mic_speech_start, first.mic_speech_end) == (ORIGIN + 1000, ORIGIN + 3000)
    # The whole second utterance, its pause included, and nothing of the third.
    assert (second.mic_speech_start, second.mic_speech_end, second.turn_id) == (
        ORIGIN + 22500,
        ORIGIN + 24500,
        2,
    )
    assert (third.mic_speech_start, third.mic_speech_end, third.turn_id) == (
        ORIGIN + 44000,
        ORIGIN + 46000,
        None,
    )
