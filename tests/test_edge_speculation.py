"""Adaptive end of turn and speculation at the edge, on virtual time: the silence
that ends a turn as a function of its transcript, pause -> resume -> confirm, and
the hold on a speculative reply's output."""

from __future__ import annotations

import math

import pytest

from proto.messages import AudioChunk
from services.edge.completeness import DEFAULT_TRAILING_WORDS, normalize_words, reading
from services.edge.endpointing import Ended, EndpointConfig, Endpointer, Event, Frame, Paused, Started
from services.edge.holding import HeldTurn
from tests.test_edge_endpointing import FRAME, feed, frame_indices, only

WORDS = normalize_words(DEFAULT_TRAILING_WORDS)
ADAPTIVE = EndpointConfig(
    silence_ms=400, silence_complete_ms=250, silence_incomplete_ms=900, speculate_after_ms=20
)
# One silence whatever the transcript: the pause's mechanics without its wait for the final.
PAUSING = EndpointConfig(
    silence_ms=400, silence_complete_ms=400, silence_incomplete_ms=400, speculate_after_ms=20
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is the weather like in Paris?", "complete"),
        ("He was not an ill disposed young man.", "complete"),
        ("Stop!", "complete"),
        ("I went to the store and", "incomplete"),
        ("I went to the store and.", "incomplete"),  # Whisper's period on a trailing word
        ("So, um", "incomplete"),
        ("Well, uh...", "incomplete"),
        ("I was thinking…", "incomplete"),
        ("First of all,", "incomplete"),
        ("Tell me about THE", "incomplete"),
        ('He said "yes."', "complete"),
        ("I think so", "incomplete"),
        ("Hello there", "unknown"),
        ("   ", "unknown"),
        (None, "unknown"),
    ],
)
def test_reading_of_a_transcript(text: str | None, expected: str) -> None:
    assert reading(text, WORDS) == expected


def test_silence_is_a_function_of_the_text_and_configurable() -> None:
    assert ADAPTIVE.silence_for("Is it raining?") == 250
    assert ADAPTIVE.silence_for("Is it raining") == 400
    assert ADAPTIVE.silence_for("Is it raining and") == 900
    assert ADAPTIVE.silence_for(None) == 400
    custom = EndpointConfig(silence_incomplete_ms=700, trailing_words=normalize_words(["raining"]))
    assert custom.silence_for("Is it raining") == 700
    assert custom.silence_for("Is it raining and") == 400  # "and" is not in this list


def speak(endpointer: Endpointer, probabilities: list[float], start: int = 0) -> list[Event]:
    return feed(endpointer, probabilities, start)


def test_complete_transcript_ends_the_turn_sooner() -> None:
    endpointer = Endpointer(ADAPTIVE)
    events = speak(endpointer, [0.9] * 50)  # speech until frame 50 (1.0 s)
    endpointer.heard(1, "What time is it?", math.inf)  # a (speculative) final: heard it all
    events = speak(endpointer, [0.0] * 30, start=50)
    (end,) = only(events, Ended)
    assert isinstance(end, Ended)
    assert end.decided_at == pytest.approx(1.0 + 0.26)  # 250 ms, in whole 20 ms frames
    assert end.paused and not end.forced


def test_trailing_transcript_waits_longer() -> None:
    endpointer = Endpointer(ADAPTIVE)
    speak(endpointer, [0.9] * 50)
    endpointer.heard(1, "I would like to go to the", math.inf)
    events = speak(endpointer, [0.0] * 40, start=50)  # 800 ms: not enough
    assert only(events, Ended) == []
    (end,) = only(speak(endpointer, [0.0] * 10, start=90), Ended)
    assert isinstance(end, Ended) and end.decided_at == pytest.approx(1.0 + 0.9)


def test_a_stale_partial_can_lengthen_but_never_shorten_the_silence() -> None:
    endpointer = Endpointer(ADAPTIVE)
    speak(endpointer, [0.9] * 50)
    # A partial that heard up to 0.7 s reads complete, but words came after it.
    endpointer.heard(1, "I want.", 0.7)
    assert endpointer.end_silence_ms() == 400
    endpointer.heard(1, "I want to", 0.7)
    assert endpointer.end_silence_ms() == 900
    endpointer.heard(1, "I want it.", 1.0)  # heard up to the last voiced frame
    assert endpointer.end_silence_ms() == 250


def test_a_transcript_that_heard_less_than_the_last_one_is_ignored() -> None:
    endpointer = Endpointer(ADAPTIVE)
    speak(endpointer, [0.9] * 50)
    endpointer.heard(1, "What time is it?", math.inf)  # the speculative final
    # The partial in flight at the pause comes after it (stt decodes them on two lanes).
    endpointer.heard(1, "What time", 0.8)
    assert endpointer.end_silence_ms() == 250
    (end,) = only(speak(endpointer, [0.0] * 30, start=50), Ended)
    assert isinstance(end, Ended) and end.decided_at == pytest.approx(1.0 + 0.26)


def test_an_older_partial_does_not_replace_a_newer_one() -> None:
    endpointer = Endpointer(ADAPTIVE)
    speak(endpointer, [0.9] * 50)
    endpointer.heard(1, "I want it.", 1.0)
    endpointer.heard(1, "I want to", 0.7)  # decoded from less audio, published later
    assert endpointer.end_silence_ms() == 250


def test_transcripts_of_another_generation_are_ignored() -> None:
    endpointer = Endpointer(ADAPTIVE)
    speak(endpointer, [0.9] * 20)
    endpointer.heard(7, "Done.", math.inf)
    assert endpointer.end_silence_ms() == 400


def test_pause_at_the_first_silent_frame_then_confirm() -> None:
    endpointer = Endpointer(PAUSING)
    events = speak(endpointer, [0.0] * 20 + [0.9] * 30 + [0.0] * 25)
    (paused,) = only(events, Paused)
    assert isinstance(paused, Paused)
    assert paused.turn_id == 1
    assert paused.at == pytest.approx(50 * FRAME)  # the last voiced moment
    assert paused.decided_at == pytest.approx(51 * FRAME)  # end of the first silent frame
    # Every frame up to and including the first silent one, pre-roll included.
    sent_before = [e for e in events[: events.index(paused)] if isinstance(e, Frame)]
    assert paused.frame_count == len(sent_before) == 15 + 30 + 1
    (end,) = only(events, Ended)
    assert isinstance(end, Ended)
    assert end.turn_id == 1 and end.paused and end.frame_count == len(frame_indices(events))
    assert end.decided_at == pytest.approx(50 * FRAME + 0.4)
    assert [type(e) for e in events if not isinstance(e, Frame)] == [Started, Paused, Ended]


def test_speech_resumed_after_a_pause_continues_as_a_new_generation() -> None:
    endpointer = Endpointer(PAUSING)
    events = speak(endpointer, [0.9] * 30 + [0.0] * 10 + [0.9] * 20 + [0.0] * 25)
    starts = only(events, Started)
    assert [(s.turn_id, s.continues) for s in starts if isinstance(s, Started)] == [(1, 0), (2, 1)]
    resumed = starts[1]
    assert isinstance(resumed, Started)
    assert resumed.at == pytest.approx(40 * FRAME)  # first voiced frame after the pause
    # The frames of the pause and the first 4 resumed ones belong to generation 1;
    # from the 5th voiced frame (min_speech_ms) on they are generation 2's.
    first = [int.from_bytes(e.pcm, "little") for e in events if isinstance(e, Frame) and e.turn_id == 1]
    second = [int.from_bytes(e.pcm, "little") for e in events if isinstance(e, Frame) and e.turn_id == 2]
    assert first[-1] == 43 and second[0] == 44 and second == list(range(44, 80))
    assert events.index(resumed) < next(
        i for i, e in enumerate(events) if isinstance(e, Frame) and e.turn_id == 2
    )
    paused = only(events, Paused)
    assert [p.turn_id for p in paused if isinstance(p, Paused)] == [1, 2]
    (end,) = only(events, Ended)
    assert isinstance(end, Ended)
    assert (end.turn_id, end.frame_count) == (2, len(second))
    assert end.at == pytest.approx(60 * FRAME)


def test_a_blip_in_a_pause_neither_resumes_nor_extends_it() -> None:
    endpointer = Endpointer(PAUSING)
    # 3 voiced frames (60 ms < min_speech_ms) in the middle of the pause
    events = speak(endpointer, [0.9] * 30 + [0.0] * 5 + [0.9] * 3 + [0.0] * 30)
    assert [s.turn_id for s in only(events, Started)] == [1]
    (end,) = only(events, Ended)
    assert isinstance(end, Ended)
    assert end.at == pytest.approx(30 * FRAME)  # the blip is not the end of speech
    # 400 ms of silence, not counting the 60 ms the blip lasted
    assert end.decided_at == pytest.approx(30 * FRAME + 0.4 + 0.06)


def test_a_continued_generation_forgets_the_paused_ones_transcript() -> None:
    endpointer = Endpointer(ADAPTIVE)
    speak(endpointer, [0.9] * 30 + [0.0] * 3)
    endpointer.heard(1, "Yes.", math.inf)
    assert endpointer.end_silence_ms() == 250
    speak(endpointer, [0.9] * 5, start=33)
    assert endpointer.turn_id == 2
    assert endpointer.end_silence_ms() == 400  # "Yes." said nothing about what came after


def test_while_paused_the_turn_waits_for_the_speculative_final() -> None:
    endpointer = Endpointer(ADAPTIVE)
    speak(endpointer, [0.9] * 50)
    # 600 ms of silence and no final yet (a slow machine): the words may trail off.
    assert only(speak(endpointer, [0.0] * 30, start=50), Ended) == []
    endpointer.heard(1, "What time is it?", math.inf)  # it reads complete: 250 ms passed long ago
    (end,) = only(speak(endpointer, [0.0], start=80), Ended)
    assert isinstance(end, Ended) and end.decided_at == pytest.approx(1.0 + 0.62)


def test_a_stale_partial_while_paused_does_not_end_the_wait_for_the_final() -> None:
    endpointer = Endpointer(ADAPTIVE)
    speak(endpointer, [0.9] * 50)
    endpointer.heard(1, "Had he married.", 0.8)  # before the last words: it cannot shorten
    speak(endpointer, [0.0] * 2, start=50)
    assert endpointer.paused and endpointer.end_silence_ms() == 900
    endpointer.heard(1, "Had he married a more amiable woman, he might...", math.inf)
    assert endpointer.end_silence_ms() == 900  # the final trails off: the user may go on


def test_without_a_final_a_paused_turn_ends_at_the_trailing_silence() -> None:
    endpointer = Endpointer(ADAPTIVE)
    events = speak(endpointer, [0.9] * 50 + [0.0] * 50)
    (end,) = only(events, Ended)
    assert isinstance(end, Ended) and end.decided_at == pytest.approx(1.0 + 0.9)


def test_without_speculation_the_plain_silence_ends_a_turn_with_no_transcript() -> None:
    config = EndpointConfig(silence_ms=400, silence_incomplete_ms=900, speculate_after_ms=0)
    (end,) = only(speak(Endpointer(config), [0.9] * 50 + [0.0] * 30), Ended)
    assert isinstance(end, Ended) and end.decided_at == pytest.approx(1.0 + 0.4)


def test_no_speculation_when_disabled() -> None:
    endpointer = Endpointer(EndpointConfig(speculate_after_ms=0))
    events = speak(endpointer, [0.9] * 30 + [0.0] * 10 + [0.9] * 20 + [0.0] * 25)
    assert only(events, Paused) == []
    assert [s.turn_id for s in only(events, Started)] == [1]


def test_max_utterance_spans_generations() -> None:
    endpointer = Endpointer(EndpointConfig(max_utterance_ms=2000, speculate_after_ms=20))
    events = speak(endpointer, ([0.9] * 20 + [0.0] * 5) * 6)
    (end,) = only(events, Ended)[:1]
    assert isinstance(end, Ended) and end.forced
    assert end.decided_at == pytest.approx(2.0)  # counted from the utterance's first start


# --- holding a speculative reply ------------------------------------------------


def chunk(turn: int, index: int = 0) -> AudioChunk:
    return AudioChunk(
        session_id="s", turn_id=turn, seq=index, chunk_index=index, part=0, pcm=b"\0\0", sample_rate=22050
    )


def test_output_of_the_open_generation_waits_for_confirmation() -> None:
    held = HeldTurn()
    assert not held.hold(0, chunk(0))  # the greeting is not the user's turn: play it
    held.open(1)
    first, second = chunk(1, 0), chunk(1, 1)
    event = {"type": "agent_text", "turn_id": 1, "text": "Hi"}
    assert held.hold(1, first) and held.hold(1, event) and held.hold(1, second)
    assert held.confirm(2) == []  # not the open generation
    assert held.confirm(1) == [first, event, second]
    assert held.open_turn is None
    assert not held.hold(1, chunk(1, 2))  # confirmed: the rest streams straight through


def test_discarded_generation_output_is_dropped() -> None:
    held = HeldTurn()
    held.open(1)
    held.hold(1, chunk(1))
    assert held.open(2, continues=1) == [chunk(1)]  # the user went on: generation 2 continues 1
    assert held.void(1) and not held.void(2) and not held.void(0)
    assert not held.hold(1, chunk(1, 1))  # late audio of 1 goes to playout, which drops it as stale
    held.hold(2, chunk(2))
    assert held.discard(1) == []  # a Cancel of an older turn leaves 2's output alone
    assert held.discard(2) == [chunk(2)]
    assert held.confirm(2) == []
