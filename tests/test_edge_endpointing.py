"""Endpointing on virtual time, then Silero + endpointing on real LibriVox speech."""

from __future__ import annotations

import numpy as np
import pytest

from services.edge.endpointing import Ended, EndpointConfig, Endpointer, Event, Frame, Started
from services.edge.vad import SileroModel
from tests.support import librivox_utterances

FRAME = 0.02


def feed(endpointer: Endpointer, probabilities: list[float], start_index: int = 0) -> list[Event]:
    """Frame i carries its index as PCM so tests can tell which frames were sent."""
    events: list[Event] = []
    for i, p in enumerate(probabilities, start_index):
        events += endpointer.push(i.to_bytes(4, "little"), p, i * FRAME)
    return events


def frame_indices(events: list[Event]) -> list[int]:
    return [int.from_bytes(e.pcm, "little") for e in events if isinstance(e, Frame)]


def only(events: list[Event], kind: type) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def test_silence_and_short_blips_start_nothing() -> None:
    # 80 ms of speech is under min_speech_ms (100 ms): a cough, not an utterance.
    events = feed(Endpointer(), [0.0] * 50 + [0.9] * 4 + [0.0] * 50 + [0.9] * 4 + [0.1] * 50)
    assert events == []


def test_utterance_start_preroll_end_and_frame_count() -> None:
    probabilities = [0.0] * 30 + [0.9] * 50 + [0.0] * 30
    events = feed(Endpointer(), probabilities)
    started, ended = only(events, Started), only(events, Ended)
    assert len(started) == 1 and isinstance(started[0], Started)
    assert started[0].turn_id == 1 and started[0].at == pytest.approx(30 * FRAME)
    # The start is decided on the 5th voiced frame (100 ms): it comes before any frame.
    assert isinstance(events[0], Started)
    sent = frame_indices(events)
    # 300 ms of pre-roll before the first voiced frame, then every frame until the end.
    assert sent[0] == 15 and sent == list(range(15, 100))
    assert len(ended) == 1
    end = ended[0]
    assert isinstance(end, Ended)
    assert end.turn_id == 1 and not end.forced
    assert end.at == pytest.approx(80 * FRAME)  # end of the last voiced frame
    assert end.decided_at == pytest.approx(100 * FRAME)  # after 400 ms of silence
    assert end.frame_count == len(sent) == 85
    assert events[-1] is end  # nothing sent after the end, silence or not


def test_silence_under_endpoint_keeps_the_utterance_open() -> None:
    probabilities = [0.9] * 10 + [0.0] * 19 + [0.9] * 10 + [0.0] * 25
    events = feed(Endpointer(), probabilities)
    assert len(only(events, Started)) == 1
    (end,) = only(events, Ended)
    assert isinstance(end, Ended)
    assert end.at == pytest.approx(39 * FRAME)


def test_hysteresis_between_thresholds() -> None:
    # 0.4 is below the start threshold but above neg_threshold: it neither starts
    # the silence clock nor resets it once started.
    config = EndpointConfig(threshold=0.5, neg_threshold=0.35)
    holds = feed(Endpointer(config), [0.9] * 10 + [0.4] * 40)
    assert only(holds, Ended) == []
    ends = feed(Endpointer(config), [0.9] * 10 + [0.1] * 5 + [0.4] * 15)
    (end,) = only(ends, Ended)
    assert isinstance(end, Ended)
    assert end.decided_at == pytest.approx(30 * FRAME)


def test_max_utterance_forces_an_end_and_the_next_turn() -> None:
    config = EndpointConfig(max_utterance_ms=2000)
    events = feed(Endpointer(config), [0.9] * 160)
    ends = only(events, Ended)
    assert [e.turn_id for e in only(events, Started)] == [1, 2]
    first = ends[0]
    assert isinstance(first, Ended)
    assert first.forced and first.decided_at == pytest.approx(2.0)


def test_turns_count_up_and_preroll_never_resends_frames() -> None:
    endpointer = Endpointer()
    events = feed(endpointer, [0.9] * 20 + [0.0] * 22 + [0.9] * 10 + [0.0] * 30)
    assert [e.turn_id for e in only(events, Started)] == [1, 2]
    sent = frame_indices(events)
    assert len(sent) == len(set(sent))  # the second pre-roll starts after the first end
    assert sum(e.frame_count for e in only(events, Ended) if isinstance(e, Ended)) == len(sent)


def test_close_ends_an_open_utterance() -> None:
    endpointer = Endpointer()
    events = feed(endpointer, [0.9] * 20)
    ended = endpointer.close(1.0)
    assert ended is not None and ended.frame_count == len(frame_indices(events))
    assert endpointer.close(1.1) is None


@pytest.fixture(scope="module")
def silero() -> SileroModel:
    model = SileroModel()
    model.warm_up()
    return model


def run_silero(model: SileroModel, pcm: np.ndarray) -> list[Event]:
    stream, endpointer = model.stream(), Endpointer()
    frames = pcm[: pcm.size // 320 * 320].reshape(-1, 320)
    events: list[Event] = []
    for i, frame in enumerate(frames):
        events += endpointer.push(frame.tobytes(), stream.push(frame), i * FRAME)
    return events


def energy_bounds(pcm: np.ndarray) -> tuple[float, float]:
    frames = pcm[: pcm.size // 320 * 320].reshape(-1, 320).astype(np.float64)
    rms = np.sqrt((frames**2).mean(axis=1))
    loud = np.flatnonzero(rms > 0.2 * rms.max())
    return loud[0] * FRAME, (loud[-1] + 1) * FRAME


@pytest.mark.parametrize("utterance", librivox_utterances(), ids=lambda u: u.name[-4:])
def test_silero_finds_start_and_end_of_real_speech(silero: SileroModel, utterance: object) -> None:
    speech = utterance.pcm16()  # type: ignore[attr-defined]
    pad = np.zeros(16000, dtype=np.int16)
    pcm = np.concatenate([pad, speech, pad])
    onset, offset = energy_bounds(pcm)
    events = run_silero(silero, pcm)
    starts, ends = only(events, Started), only(events, Ended)
    assert len(starts) == len(ends) == 1, "one read sentence is one utterance"
    start, end = starts[0], ends[0]
    assert isinstance(start, Started) and isinstance(end, Ended)
    assert onset - 0.1 <= start.at <= onset + 0.35
    assert offset - 0.3 <= end.at <= offset + 0.35
    assert end.decided_at == pytest.approx(end.at + 0.4, abs=0.05)
    assert end.frame_count == len(only(events, Frame))
    # Every voiced frame was sent: the utterance covers onset-to-offset and the pre-roll.
    assert end.frame_count * FRAME >= (end.decided_at - start.at) + 0.25


def test_silero_ignores_white_noise(silero: SileroModel) -> None:
    noise = np.random.default_rng(7).normal(0, 2000, 16000 * 5).clip(-32768, 32767).astype(np.int16)
    assert only(run_silero(silero, noise), Started) == []
