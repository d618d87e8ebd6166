"""The barge-in scenario's plan and its reading of the page, on made-up timelines."""

from __future__ import annotations

import numpy as np

from bench import barge_in
from bench.barge_in import Stimulus, Trial, Voice, build, summary, trials
from bench.microphone import SAMPLE_RATE, Placed, Utterance

BLOCK = 5.0
ORIGIN = 1_700_000_000_000.0


def timeline(loud: list[tuple[float, float]], until_ms: float) -> list[list[float]]:
    """BLOCK ms blocks from ORIGIN, loud inside the given spans (ms after ORIGIN)."""
    return [
        [ORIGIN + float(t), 0.1 if any(a <= t < b for a, b in loud) else 0.0]
        for t in np.arange(0, until_ms, BLOCK)
    ]


def stimulus(kind: str, start_s: float, end_s: float) -> Stimulus:
    return Stimulus(kind, Placed(kind, "", start_s, end_s, start_s, end_s))


def event(kind: str, turn: int, at_ms: float, **extra: object) -> dict[str, object]:
    return {"type": kind, "turn_id": turn, "at": ORIGIN + at_ms, **extra}


def test_build_makes_one_call_per_trial_the_prompt_then_a_sound_over_the_reply() -> None:
    voice = np.zeros(SAMPLE_RATE, dtype=np.int16)
    voice[4000:12000] = 8000
    calls = build([Utterance("a", "x", voice), Utterance("b", "y", voice)], voice, voice, lead_in_s=1.0)
    kinds = [[s.kind for s in stimuli] for stimuli, _ in calls]
    assert kinds[:2] == [["prompt", "interrupt"]] * 2
    assert sorted(k[1] for k in kinds[2:]) == sorted(["noise", "cough", "backchannel"] * 2)
    assert all(k[0] == "prompt" for k in kinds)
    (prompt, interrupt), samples = calls[0]
    assert prompt.placed.speech_start_s == 1.25
    assert interrupt.placed.start_s == prompt.placed.end_s + barge_in.INTO_THE_REPLY_S
    assert samples.size / SAMPLE_RATE > interrupt.placed.end_s


def voice(remote: list[list[float]], received: list[list[float]] | None = None) -> Voice:
    return Voice(remote, remote if received is None else received, BLOCK)


def talked_over(
    reply_until_ms: float, *events: dict[str, object], received_until_ms: float | None = None
) -> list[Trial]:
    """The prompt (1-2 s), the reply from 3.5 s to ``reply_until_ms`` as played (to
    ``received_until_ms`` as received; the same by default; its agent_started_speaking
    at 3.3 s, then ``events``), and speech over it from 6 s."""
    stimuli = [stimulus("prompt", 1.0, 2.0), stimulus("interrupt", 6.0, 8.0)]
    mic = timeline([(1000, 2000), (6000, 8000)], 12000)
    played = timeline([(3500, reply_until_ms)], 12000)
    received = timeline([(3500, received_until_ms or reply_until_ms)], 12000)
    return trials(stimuli, mic, voice(played, received), [event("agent_started_speaking", 1, 3300), *events])


def test_a_real_interruption_is_timed_from_its_onset_to_the_agents_silence() -> None:
    # The reply, cut 420 ms after the onset.
    prompt, interrupt = talked_over(6420, event("agent_stopped_speaking", 1, 6700, interrupted=True))
    assert prompt.playing_turn is None and prompt.note == "the agent was not speaking"
    assert (interrupt.playing_turn, interrupt.cut, interrupt.stop_ms) == (1, True, 420.0)
    assert interrupt.received_stop_ms == 420.0


def test_the_played_voice_stops_at_the_pages_hold_before_the_received_one() -> None:
    interrupt = talked_over(
        6380,  # the page held the voice when the edge's pause reached it...
        event("agent_paused", 1, 6380),
        event("agent_stopped_speaking", 1, 6900, interrupted=True),
        received_until_ms=6500,  # ...while what the edge sent before still arrived
    )[1]
    assert (interrupt.stop_ms, interrupt.received_stop_ms) == (380.0, 500.0)


def test_a_reply_that_was_not_cut_is_a_miss_not_a_time() -> None:
    interrupt = talked_over(9000, event("agent_stopped_speaking", 1, 9000, interrupted=False))[1]
    assert (interrupt.cut, interrupt.stop_ms, interrupt.note) == (False, None, "the reply was not cut")


def test_a_reply_that_ended_on_its_own_at_the_onset_is_no_trial() -> None:
    interrupt = talked_over(6300, event("agent_stopped_speaking", 1, 6400, interrupted=False))[1]
    assert (interrupt.playing_turn, interrupt.note) == (None, "the reply ended on its own")


def test_false_alarms_count_only_when_they_cut_the_reply() -> None:
    stimuli = [stimulus("prompt", 1.0, 2.0), stimulus("noise", 6.0, 6.4), stimulus("cough", 9.0, 9.4)]
    mic = timeline([(1000, 2000), (6000, 6400), (9000, 9400)], 14000)
    remote = timeline([(3500, 9600)], 14000)
    events = [
        event("agent_started_speaking", 1, 3300),
        event("agent_paused", 1, 6400),
        event("agent_stopped_speaking", 1, 9700, interrupted=True),
    ]
    _, noise, cough = trials(stimuli, mic, voice(remote), events)
    assert (noise.cut, noise.paused) == (False, True)  # its window closed before the cut
    assert cough.cut is True


def test_summary_against_the_targets() -> None:
    found = [
        Trial("interrupt", "a", 1.0, 1, True, False, 400.0),
        Trial("interrupt", "b", 1.0, 3, True, False, 500.0),
        Trial("interrupt", "c", 1.0, None, False, False, None, "the agent was not speaking"),
        Trial("noise", "n", 1.0, 5, False, True, None),
        Trial("cough", "c", 1.0, 5, False, False, None),
    ]
    figures = summary(found, interrupt_speech_ms=300)
    assert figures["stop_ms"]["count"] == 2 and figures["stop_target_p90_ms"] == 450
    assert figures["stop_p90"] == "MISS"  # p90 of 400 and 500 is 490
    assert (figures["false_tried"], figures["false_interruptions"], figures["false_paused"]) == (2, 0, 1)
    assert figures["false_interruptions_verdict"] == "PASS"
    table = barge_in.table({"summary": figures, "trials": [t.__dict__ for t in found]})
    assert "target p90 <= 450 ms   MISS" in table


def test_onsets_follow_a_microphone_that_drifts_behind_the_plan() -> None:
    stimuli = [stimulus("prompt", 1.0, 2.0), stimulus("interrupt", 10.0, 11.0), stimulus("cough", 20.0, 20.3)]
    # Played 8 % slow: the second begins at 10.72 s, the third at 20.44 s; the cough is
    # too quiet to be found, and that loses nothing else.
    mic = timeline([(1000, 2000), (10720, 11800)], 30000)
    first, second, third = barge_in.onsets(stimuli, mic)
    assert (first, second, third) == (ORIGIN + 1000, ORIGIN + 10720, None)


def test_a_reply_between_two_chunks_is_still_speaking() -> None:
    stimuli = [stimulus("prompt", 1.0, 2.0), stimulus("interrupt", 6.0, 8.0)]
    mic = timeline([(1000, 2000), (6000, 8000)], 12000)
    remote = timeline([(3500, 5000), (6100, 6550)], 12000)  # a gap at the onset
    events = [
        event("agent_started_speaking", 1, 3300),
        event("agent_stopped_speaking", 1, 6700, interrupted=True),
    ]
    interrupt = trials(stimuli, mic, voice(remote), events)[1]
    assert (interrupt.playing_turn, interrupt.stop_ms) == (1, 550.0)
