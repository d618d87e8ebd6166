"""The PCM splitter: bounded pieces that join back to the input."""

from __future__ import annotations

import pytest

from services.tts.split import max_piece_bytes, split_pcm


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
