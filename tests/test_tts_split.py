"""The PCM splitter: bounded pieces that join back to the input."""

from __future__ import annotations

import numpy as np
import pytest

from services.tts.split import max_piece_bytes, split_pcm, trim_leading_silence


def test_piece_size_is_whole_samples_of_max_ms() -> None:
    assert max_piece_bytes(22050, 200) == 4410 * 2
    assert max_piece_bytes(16000, 20) == 320 * 2
    # Less than one sample's worth still moves one sample, or the loop would never end.
    assert max_piece_bytes(500, 1) == 2


@pytest.mark.parametrize("samples", [0, 1, 4409, 4410, 4411, 22050, 22050 * 3 + 17])
def test_pieces_are_bounded_and_join_back(samples: int) -> None:
    pcm = bytes(i % 251 for i in range(samples * 2))
    pieces = split_pcm(pcm, 22050, 200)
    assert b"".join(pieces) == pcm
    assert all(0 < len(p) <= 8820 and len(p) % 2 == 0 for p in pieces)
    # Only the last piece may be short: no gratuitous extra messages.
    assert all(len(p) == 8820 for p in pieces[:-1])
    assert len(pieces) == -(-samples // 4410)


def test_trailing_half_sample_is_dropped() -> None:
    pieces = split_pcm(b"\x01\x02\x03\x04\x05", 16000, 200)
    assert pieces == [b"\x01\x02\x03\x04"]


def test_small_limit_gives_many_pieces() -> None:
    pcm = bytes(16000 * 2)  # one second at 16 kHz
    pieces = split_pcm(pcm, 16000, 20)
    assert len(pieces) == 50
    assert {len(p) for p in pieces} == {640}


@pytest.mark.parametrize(("rate", "ms"), [(0, 200), (22050, 0), (-1, 200), (22050, -5)])
def test_invalid_arguments_are_refused(rate: int, ms: int) -> None:
    with pytest.raises(ValueError):
        split_pcm(b"\x00\x00", rate, ms)


def tone(ms: int, rate: int, level: float) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (level * 32767 * np.sin(2 * np.pi * 200 * t)).astype("<i2")


def test_leading_silence_is_cut_to_a_short_margin() -> None:
    rate = 22050
    hush = (np.random.default_rng(1).normal(0, 3, rate * 60 // 1000)).astype("<i2")  # ~-80 dBFS
    voice = tone(300, rate, 0.3)
    trimmed = trim_leading_silence(np.concatenate([hush, voice]).tobytes(), rate)
    kept_ms = (len(trimmed) // 2 - voice.size) * 1000 / rate
    assert 5 <= kept_ms <= 15  # about LEAD_MARGIN_MS of the 60 ms left before the voice
    assert trimmed.endswith(voice.tobytes())


def test_audio_that_starts_loud_or_never_gets_loud_is_kept_whole() -> None:
    rate = 16000
    loud = tone(200, rate, 0.3).tobytes()
    quiet = np.zeros(rate // 10, dtype="<i2").tobytes()
    assert trim_leading_silence(loud, rate) == loud
    assert trim_leading_silence(quiet, rate) == quiet
    assert trim_leading_silence(b"", rate) == b""
