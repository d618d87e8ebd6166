"""The playout buffer: order, reordering, cancel flush, superseding turns, heard text."""

from __future__ import annotations

import numpy as np

from proto.messages import AudioChunk
from services.edge.audio import ChunkResampler
from services.edge.playout import PlayoutBuffer, PlayoutEvent, TurnFinished, TurnStarted

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
    for index, word in enumerate(["one", "two", "three"]):
        buffer.push(chunk(3, index, frames=2, text=word, last=index == 2), 0.0)
    markers, _ = play(buffer, 3)  # chunk 0 fully, the first frame of chunk 1
    assert markers == [3001, 3001, 3011]
    assert buffer.playing and buffer.interruptible and buffer.turn_id == 3
    assert buffer.cancel(3) == [TurnFinished(3, "one two", interrupted=True)]
    markers, events = play(buffer, 2)
    assert markers == [0, 0] and events == []
    # Late pieces of the cancelled turn and of older turns are dropped.
    assert buffer.push(chunk(3, 3), 0.0) == (False, [])
    assert buffer.push(chunk(2, 0), 0.0) == (False, [])
    assert buffer.push(chunk(4, 0, last=True), 0.0)[0]


def test_cancel_of_a_newer_turn_covers_the_playing_one() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(chunk(1, 0, frames=5, text="long"), 0.0)
    play(buffer, 1)
    assert buffer.cancel(2) == [TurnFinished(1, "long", interrupted=True)]
    assert buffer.push(chunk(2, 0), 0.0) == (False, [])  # turn 2 was cancelled too
    assert buffer.cancel(0) == []


def test_a_newer_turn_supersedes_the_playing_one() -> None:
    buffer = PlayoutBuffer(lambda: identity)
    buffer.push(chunk(1, 0, frames=5, text="old"), 0.0)
    play(buffer, 1)
    accepted, events = buffer.push(chunk(2, 0, text="new", last=True), 0.0)
    assert accepted and events == [TurnFinished(1, "old", interrupted=True)]
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
    buffer.push(chunk(1, 1, frames=5, text="later", last=True), 0.0)
    play(buffer, 2)
    assert buffer.interruptible
    assert buffer.cancel(1) == [TurnFinished(1, "later", interrupted=True)]


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
