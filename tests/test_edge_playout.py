"""The playout buffer: order, reordering, cancel flush, superseding turns, heard text
aligned to the play position, pause and resume, the end of the sentence playing."""

from __future__ import annotations

import numpy as np
import pytest

from proto.messages import AudioChunk
from services.edge.alignment import heard_words, sentence_end
from services.edge.audio import ChunkResampler
from services.edge.playout import PlayoutBuffer, PlayoutEvent, TurnFinished, TurnPaused, TurnStarted

FRAME = 960


def identity(pcm: bytes, sample_rate: int, last: bool) -> np.ndarray:
    assert sample_rate == 48000
    return np.frombuffer(pcm, dtype=np.int16).copy()


def chunk(
    turn: int,
    index: int,
    part: int = 0,
    *,
    frames: int = 1,
    text: str = "",
    final: bool = True,
    last: bool = False,
    interruptible: bool = True,
) -> AudioChunk:
    """``frames`` 20 ms frames at 48 kHz filled with the marker 1000*turn + 10*index + part + 1."""
    marker = 1000 * turn + 10 * index + part + 1
    return AudioChunk(
        session_id="s",
        turn_id=turn,
        seq=0,
        chunk_index=index,
        part=part,
        pcm=np.full(FRAME * frames, marker, dtype=np.int16).tobytes(),
        sample_rate=48000,
        text=text,
        final_part=final,
        last_chunk=last,
        allow_interruptions=interruptible,
    )


def play(buffer: PlayoutBuffer, frames: int, now: float = 0.0) -> tuple[list[int], list[PlayoutEvent]]:
    """The marker of each frame played (0 = silence) and the events seen."""
    markers: list[int] = []
    events: list[PlayoutEvent] = []
    for i in range(frames):
        frame, happened = buffer.next_frame(now + i * 0.02)
        assert frame.size == FRAME and frame.dtype == np.int16
        markers.append(int(frame[0]))
        events += happened
    return markers, events


def test_plays_in_chunk_and_part_order_whatever_the_arrival_order() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    arrivals = [
        chunk(1, 1, 0, final=True, text="world", last=True),
        chunk(1, 0, 1, final=True),
        chunk(1, 0, 0, final=False, text="hello"),
    ]
    for c in arrivals:
        accepted, events = buffer.push(c, 0.0)
        assert accepted and events == []
    markers, events = play(buffer, 5)
    assert markers == [1001, 1002, 1011, 0, 0]
    assert events == [TurnStarted(1), TurnFinished(1, "hello world", interrupted=False)]
    assert not buffer.playing


def test_silence_until_the_first_piece_then_started_once() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    markers, events = play(buffer, 3)
    assert markers == [0, 0, 0] and events == []
    buffer.push(chunk(2, 0, frames=2, text="hi", last=True), 0.0)
    markers, events = play(buffer, 3)
    assert markers == [2001, 2001, 0]
    assert events == [TurnStarted(2), TurnFinished(2, "hi", interrupted=False)]


def test_cancel_flushes_at_once_and_reports_what_was_heard() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    for index, words in enumerate(["one", "two more", "three"]):
        buffer.push(chunk(3, index, frames=2, text=words, last=index == 2), 0.0)
    markers, _ = play(buffer, 3)  # chunk 0 fully, the first frame of chunk 1
    assert markers == [3001, 3001, 3011]
    assert buffer.playing and buffer.interruptible and buffer.turn_id == 3
    # Half of "two more" played: "two" ended (3 of 8 characters), "more" did not.
    assert buffer.cancel(3) == [TurnFinished(3, "one two", interrupted=True)]
    markers, events = play(buffer, 2)
    assert markers == [0, 0] and events == []
    # Late pieces of the cancelled turn and of older turns are dropped.
    assert buffer.push(chunk(3, 3), 0.0) == (False, [])
    assert buffer.push(chunk(2, 0), 0.0) == (False, [])
    assert buffer.push(chunk(4, 0, last=True), 0.0)[0]


def test_cancel_of_a_newer_turn_covers_the_playing_one() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(chunk(1, 0, frames=5, text="a long one"), 0.0)
    play(buffer, 1)
    assert buffer.cancel(2) == [TurnFinished(1, "a", interrupted=True)]  # a fifth played
    assert buffer.push(chunk(2, 0), 0.0) == (False, [])  # turn 2 was cancelled too
    assert buffer.cancel(0) == []


def test_a_newer_turn_supersedes_the_playing_one() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(chunk(1, 0, frames=5, text="so old then"), 0.0)
    play(buffer, 1)
    accepted, events = buffer.push(chunk(2, 0, text="new", last=True), 0.0)
    assert accepted and events == [TurnFinished(1, "so", interrupted=True)]
    markers, events = play(buffer, 2)
    assert markers == [2001, 0]
    assert events == [TurnStarted(2), TurnFinished(2, "new", interrupted=False)]


def test_a_missing_piece_is_skipped_after_the_reorder_wait() -> None:
    buffer = PlayoutBuffer(lambda: identity, reorder_wait=0.1)
    buffer.push(chunk(1, 0, text="a"), 0.0)
    buffer.push(chunk(1, 2, text="c", last=True), 0.0)  # chunk 1 never comes
    markers, _ = play(buffer, 4, now=0.0)  # t = 0..0.06 s: still waiting for chunk 1
    assert markers == [1001, 0, 0, 0]
    markers, events = play(buffer, 2, now=0.2)
    assert markers == [1021, 0]
    assert events == [TurnFinished(1, "a c", interrupted=False)]
    assert buffer.push(chunk(1, 1), 0.3) == (False, [])  # too late, and the turn is done


def test_duplicates_are_dropped() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    assert buffer.push(chunk(1, 0, final=False), 0.0)[0]
    assert not buffer.push(chunk(1, 0, final=False), 0.0)[0]


def test_uninterruptible_chunks_say_so() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(chunk(1, 0, interruptible=False), 0.0)
    buffer.push(chunk(1, 1, frames=3, last=True), 0.0)
    play(buffer, 1)
    assert buffer.playing and not buffer.interruptible
    play(buffer, 1)
    assert buffer.interruptible


def test_a_cancel_lets_the_uninterruptible_chunk_finish_then_cuts() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(chunk(1, 0, frames=3, text="hello", interruptible=False), 0.0)
    buffer.push(chunk(1, 1, frames=3, text="there", last=True), 0.0)
    play(buffer, 1)
    assert buffer.cancel(1) == []  # not yet: the greeting's first chunk plays on
    markers, events = play(buffer, 4, 0.02)
    assert markers == [1001, 1001, 0, 0]
    assert events == [TurnFinished(1, "hello", interrupted=True)]
    assert buffer.turn_id is None and not buffer.push(chunk(1, 2), 1.0)[0]


def test_a_newer_turn_waits_behind_an_uninterruptible_one() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(chunk(0, 0, frames=2, text="welcome", final=False, interruptible=False), 0.0)
    play(buffer, 1)
    accepted, events = buffer.push(chunk(1, 0, text="reply", last=True), 0.0)
    assert accepted and events == []
    markers, events = play(buffer, 1, 0.02)
    assert markers == [1] and events == []  # the chunk's last piece is still to come
    buffer.push(chunk(0, 0, 1, frames=1, interruptible=False), 0.05)
    markers, events = play(buffer, 3, 0.04)
    assert markers == [2, 1001, 0]
    assert events == [
        TurnFinished(0, "welcome", interrupted=True),
        TurnStarted(1),
        TurnFinished(1, "reply", interrupted=False),
    ]


def test_a_cancel_of_an_interruptible_chunk_stays_immediate() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(chunk(1, 0, interruptible=False), 0.0)
    buffer.push(chunk(1, 1, frames=5, text="so later on", last=True), 0.0)
    play(buffer, 2)
    assert buffer.interruptible
    assert buffer.cancel(1) == [TurnFinished(1, "so", interrupted=True)]


def tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 10000).astype(np.int16)


def test_one_resampler_per_turn_joins_pieces_without_clicks() -> None:
    rate, piece = 22050, 4410  # 200 ms pieces, as tts sends
    signal = tone(rate, 1.0)
    buffer = PlayoutBuffer(ChunkResampler)
    for part, start in enumerate(range(0, signal.size, piece)):
        pcm = signal[start : start + piece].tobytes()
        last = start + piece >= signal.size
        msg = AudioChunk(
            session_id="s", turn_id=1, seq=0, chunk_index=0, part=part, pcm=pcm,
            sample_rate=rate, final_part=last, last_chunk=last,
        )  # fmt: skip
        buffer.push(msg, 0.0)
    out = np.concatenate([buffer.next_frame(0.0)[0] for _ in range(55)])
    voiced = out[np.flatnonzero(out)[0] : np.flatnonzero(out)[-1] + 1].astype(np.int32)
    assert abs(voiced.size - 48000) < 100
    # A clean 440 Hz sine at amplitude 10000 moves at most ~580 per sample at
    # 48 kHz; a restart of the filter at a join would jump far more.
    assert np.abs(np.diff(voiced[50:-50])).max() < 700
    spectrum = np.abs(np.fft.rfft(voiced))
    assert abs(np.argmax(spectrum) * 48000 / voiced.size - 440) < 5


def ramp(
    turn: int, index: int, frames: int, text: str = "", *, last: bool = False, start: int = 0
) -> AudioChunk:
    """``frames`` 20 ms frames whose samples count up from ``start``: a position is a value."""
    pcm = (np.arange(start, start + FRAME * frames) % 30000).astype(np.int16)
    return AudioChunk(
        session_id="s", turn_id=turn, seq=0, chunk_index=index, part=0, pcm=pcm.tobytes(),
        sample_rate=48000, text=text, final_part=True, last_chunk=last,
    )  # fmt: skip


def test_a_pause_silences_the_next_frame_and_resume_goes_on_from_the_same_sample() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(ramp(1, 0, 10, "first part"), 0.0)
    play(buffer, 3)
    buffer.pause()
    assert buffer.paused and buffer.playing
    frame, events = buffer.next_frame(0.06)
    assert not frame.any() and events == [TurnPaused(1)]
    markers, events = play(buffer, 20, 0.08)
    assert markers == [0] * 20 and events == []  # still paused, reported once
    # The turn's pieces still arriving are kept.
    assert buffer.push(ramp(1, 1, 2, "second", last=True, start=10 * FRAME), 0.5) == (True, [])
    buffer.resume()
    assert not buffer.paused
    frame, _ = buffer.next_frame(0.5)
    assert frame[0] == 3 * FRAME and np.array_equal(frame, np.arange(3 * FRAME, 4 * FRAME))
    markers, events = play(buffer, 9, 0.52)
    assert markers[:8] == [i * FRAME for i in range(4, 12)] and markers[8] == 0
    assert events == [TurnFinished(1, "first part second", interrupted=False)]


def test_a_pause_after_some_samples_stops_mid_frame() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(ramp(1, 0, 10, start=1), 0.0)
    buffer.pause(after=1500)
    first, events = buffer.next_frame(0.0)
    assert first.all() and events == [TurnStarted(1)]
    second, events = buffer.next_frame(0.02)
    assert second[:540].all() and not second[540:].any() and events == [TurnPaused(1)]
    assert int(second[539]) == 1500


def test_heard_text_is_the_words_played_of_the_chunk_cut_mid_way() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    ten_words = "one two six ten red and big dog ran far"  # 10 words, 2 s of audio
    buffer.push(ramp(1, 0, 100, ten_words), 0.0)
    buffer.push(ramp(1, 1, 50, "never heard", last=True), 0.0)
    play(buffer, 50)  # 1 s: half the chunk
    assert buffer.cancel(1) == [TurnFinished(1, "one two six ten red", interrupted=True)]


def test_a_cancel_of_a_paused_turn_reports_what_was_heard_before_the_pause() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(ramp(1, 0, 2, "hello"), 0.0)
    buffer.push(ramp(1, 1, 20, "one two three four"), 0.0)
    play(buffer, 12)  # "hello", then half of chunk 1
    buffer.pause()
    play(buffer, 30, 0.24)  # a long pause plays nothing
    assert buffer.cancel(1) == [TurnFinished(1, "hello one two", interrupted=True)]
    assert play(buffer, 2, 1.0)[0] == [0, 0]


def test_a_newer_turn_supersedes_a_paused_one() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(ramp(1, 0, 10, "so old then"), 0.0)
    play(buffer, 6)  # 6.6 of 11 characters: "old" (ends at 6) was heard
    buffer.pause()
    play(buffer, 3, 0.1)
    accepted, events = buffer.push(chunk(2, 0, text="new", last=True), 0.2)
    assert accepted and events == [TurnFinished(1, "so old", interrupted=True)]
    assert not buffer.paused
    markers, events = play(buffer, 2, 0.2)
    assert markers == [2001, 0] and events == [TurnStarted(2), TurnFinished(2, "new", interrupted=False)]


def test_the_sentence_playing_ends_at_its_stop_mark() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    text = "Hello there. How are you today?"  # 31 characters over 31 frames: a frame each
    buffer.push(ramp(1, 0, 31, text, last=True), 0.0)
    assert buffer.until_sentence_end(limit=10**6) == 12 * FRAME  # before anything played
    play(buffer, 13)  # into "How"
    assert buffer.until_sentence_end(limit=10**6) == 18 * FRAME
    assert buffer.until_sentence_end(limit=5 * FRAME) == 5 * FRAME  # never past the limit


def test_a_sentence_may_run_into_the_next_queued_chunk() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(ramp(1, 0, 12, "I think that"), 0.0)  # no sentence end in it
    buffer.push(ramp(1, 1, 14, "it works. Yes.", last=True), 0.0)
    play(buffer, 6)
    # The rest of chunk 0 (6 frames) and "it works." (9 of 14 characters).
    assert buffer.until_sentence_end(limit=10**6) == 15 * FRAME
    alone = PlayoutBuffer(lambda: identity)
    alone.push(ramp(1, 0, 12, "I think that"), 0.0)
    play(alone, 6)
    assert alone.until_sentence_end(limit=10**6) == 6 * FRAME  # nothing queued after: its end


def test_a_sentence_does_not_run_into_an_uninterruptible_chunk() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(ramp(1, 0, 12, "I think that"), 0.0)
    buffer.push(chunk(1, 1, frames=14, text="it works.", interruptible=False, last=True), 0.0)
    play(buffer, 6)
    assert buffer.until_sentence_end(limit=10**6) == 6 * FRAME


def test_words_heard_map_characters_to_samples() -> None:
    assert heard_words(" one two three ", 1.0) == "one two three"
    assert heard_words("one two three", 0.0) == ""
    assert heard_words("one two three", 3 / 13) == "one"  # "one" ends at character 3 of 13
    assert heard_words("one two three", 2.9 / 13) == ""
    assert heard_words("", 0.5) == ""


def test_sentence_ends_skip_decimals_and_quote_closings_count() -> None:
    assert sentence_end("It costs 3.5 dollars. Yes.", 0.0) == pytest.approx(21 / 26)
    assert sentence_end('He said "stop." Then left', 0.1) == pytest.approx(15 / 25)
    assert sentence_end("Wait!? Really", 0.0) == pytest.approx(6 / 13)
    assert sentence_end("no end here", 0.2) is None
    assert sentence_end("Done. And then", 0.6) is None  # past the only end
    assert sentence_end("Done.", 1.0) == 1.0  # at the very end: the sentence is over
