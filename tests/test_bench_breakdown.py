"""The benchmark's per-turn steps and the waterfall's layout."""

from __future__ import annotations

import itertools

import pytest

from bench.breakdown import STEPS, TurnResult, steps_of
from bench.chart import Segment, layout, layout_row

NAMES = [step for step, _, _ in STEPS]


BASE = 1_700_000_000_000.0  # epoch ms of the end of speech at the microphone


def milestones(**after_ms: float | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {"mic_speech_end": BASE}
    for _, milestone, _ in STEPS:
        value = after_ms.get(milestone)
        out[milestone] = None if value is None else BASE + value
    return out


FULL = milestones(
    edge_speech_end=90,
    speech_ended_published=490,
    stt_final_published=560,
    llm_first_token=680,
    llm_first_chunk=760,
    tts_first_audio=880,
    edge_first_audio_out=890,
    browser_first_audio=970,
)


def test_steps_add_up_to_voice_to_voice() -> None:
    steps = steps_of(FULL)
    assert steps == {
        "mic_to_edge": 90.0,
        "end_of_turn": 400.0,
        "stt_final": 70.0,
        "llm_first_token": 120.0,
        "llm_first_chunk": 80.0,
        "tts_first_audio": 120.0,
        "edge_playout": 10.0,
        "edge_to_browser": 80.0,
    }
    assert sum(v for v in steps.values() if v is not None) == 970.0


def test_a_missing_milestone_hands_its_time_to_the_next_step() -> None:
    partial = dict(FULL)
    partial["llm_first_token"] = None
    steps = steps_of(partial)
    assert steps["llm_first_token"] is None
    assert steps["llm_first_chunk"] == 200.0  # 760 - 560
    assert sum(v for v in steps.values() if v is not None) == 970.0


def test_no_reply_leaves_the_last_step_empty() -> None:
    steps = steps_of({**FULL, "browser_first_audio": None})
    assert steps["edge_to_browser"] is None and steps["edge_playout"] == 10.0


def test_layout_lays_steps_end_to_end() -> None:
    segments = layout_row(steps_of(FULL))
    assert [s.step for s in segments] == NAMES
    assert segments[0] == Segment("mic_to_edge", 0.0, 90.0)
    assert segments[2] == Segment("stt_final", 490.0, 70.0)
    for before, after in itertools.pairwise(segments):
        assert after.left == pytest.approx(before.left + before.width)
    assert segments[-1].left + segments[-1].width == pytest.approx(970.0)


def test_layout_never_runs_backwards_for_speculative_steps() -> None:
    # the transcript was final 50 ms before the edge published SpeechEnded
    steps = steps_of({**FULL, "stt_final_published": BASE + 440})
    assert steps["stt_final"] == -50.0
    segments = {s.step: s for s in layout_row(steps)}
    assert segments["stt_final"].width == 0.0
    # the next step is drawn from where the bar got to, and the bar still ends at 970 ms
    assert segments["llm_first_token"] == Segment("llm_first_token", 490.0, 190.0)
    last = segments["edge_to_browser"]
    assert last.left + last.width == pytest.approx(970.0)
    assert all(s.width >= 0 for s in segments.values())


def test_rows_are_labelled_by_turn_and_utterance() -> None:
    turn = TurnResult("sense-0930", 5, [5], 970.0, FULL, steps_of(FULL))
    lost = TurnResult("sense-0870", None, [], None, {"mic_speech_end": None}, steps_of({}))
    rows = layout([turn, lost])
    assert rows[0].label == "turn 5 (0930)" and rows[0].voice_to_voice_ms == 970.0
    assert rows[1].label == "turn - (0870)" and rows[1].segments == []
