"""The bench's measure of how often interims reached the page while the user spoke."""

from __future__ import annotations

from typing import Any

from bench.interims import cadence, table_lines
from bench.page_audio import PageTurn


def _turn(turn_id: int | None, start: float | None) -> PageTurn:
    return PageTurn("0880", turn_id, [] if turn_id is None else [turn_id], start, None, None, None)


def _transcript(at: float, turn_id: int, *, final: bool = False, speculative: bool = False) -> dict[str, Any]:
    return {"type": "transcript", "turn_id": turn_id, "final": final, "speculative": speculative, "at": at}


def test_interims_count_from_the_start_of_speech_to_the_turns_first_final() -> None:
    events = [
        _transcript(900.0, 1),  # before this utterance's speech: another turn's
        _transcript(1500.0, 2),
        _transcript(1800.0, 2),
        _transcript(2300.0, 3),  # the utterance went on in a continuing turn
        _transcript(2400.0, 3, speculative=True),  # the end: not an interim
        _transcript(2450.0, 3),  # a late interim, after the final was out
        _transcript(2500.0, 3, final=True),
    ]
    found = cadence([_turn(3, 1000.0)], events)
    assert found.first_ms == [500.0]
    assert found.gap_ms == [300.0, 500.0]
    figures = found.as_dict()
    assert figures["gap_p90"] == "MISS"  # p90 of 300 and 500 is 480
    assert figures["first_interim_ms"]["p50"] == 500.0


def test_turns_not_found_or_never_finalized_are_not_timed() -> None:
    events = [_transcript(1200.0, 1), _transcript(1400.0, 1)]
    assert cadence([_turn(None, 1000.0), _turn(1, None), _turn(1, 1000.0)], events).gap_ms == []


def test_gaps_within_the_target_pass_and_the_table_says_so() -> None:
    events = [_transcript(at, 1) for at in (1300.0, 1550.0, 1800.0)] + [_transcript(1900.0, 1, final=True)]
    figures = cadence([_turn(1, 1000.0)], events).as_dict()
    assert figures["gap_p90"] == "PASS"
    first, second = table_lines(figures)
    assert "gap p50 250 ms" in first and "PASS" in first
    assert "p50 300 ms" in second
    assert table_lines(None) == []  # runs analyzed before the page timed interims
