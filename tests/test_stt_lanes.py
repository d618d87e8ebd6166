"""A decode lane marks itself busy while its decode runs, so another lane can yield to it."""

from __future__ import annotations

import pytest

from services.stt.lanes import DecodeLane


class Recognizer:
    def transcribe(self, samples: object, *, interim: bool = False) -> str:
        return ""


def test_a_lane_is_busy_only_while_it_decodes() -> None:
    lane = DecodeLane("urgent", Recognizer())
    seen: list[bool] = []
    assert lane.idle.is_set()
    assert lane.decoding(lambda: seen.append(lane.idle.is_set()) or "text")() == "text"
    assert seen == [False] and lane.idle.is_set()


def test_a_failed_decode_leaves_the_lane_idle() -> None:
    lane = DecodeLane("urgent", Recognizer())

    def fail() -> str:
        raise RuntimeError("decode failed")

    with pytest.raises(RuntimeError):
        lane.decoding(fail)()
    assert lane.idle.is_set()
