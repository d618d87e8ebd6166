"""A decode lane marks itself busy while it decodes and publishes, so another lane can yield to it."""

from __future__ import annotations

import pytest

from services.stt.lanes import DecodeLane


class Recognizer:
    def transcribe(self, samples: object, *, interim: bool = False) -> str:
        return ""


def test_a_lane_is_busy_only_within_its_block() -> None:
    lane = DecodeLane("urgent", Recognizer())
    assert lane.idle.is_set()
    with lane.busy():
        assert not lane.idle.is_set()
    assert lane.idle.is_set()


def test_a_failed_decode_leaves_the_lane_idle() -> None:
    lane = DecodeLane("urgent", Recognizer())
    with pytest.raises(RuntimeError), lane.busy():
        raise RuntimeError("decode failed")
    assert lane.idle.is_set()
