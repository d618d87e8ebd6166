"""How often the page got an interim transcript while the user spoke: the brief asks for
at least one every 300 ms of speech. Pure functions over the page's events.

For each utterance found at the microphone, the interims that reached the page between
its first loud block and its turn's first final (speculative or not) count: the wait
from the start of speech to the first one, and the gaps between one and the next.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.page_audio import Event, PageTurn
from bench.stats import summarize, verdict

TARGET_GAP_MS = 300.0


@dataclass
class Cadence:
    first_ms: list[float] = field(default_factory=list)  # speech start -> first interim
    gap_ms: list[float] = field(default_factory=list)  # interim -> next interim

    def as_dict(self) -> dict[str, Any]:
        gaps = summarize(self.gap_ms)
        return {
            "first_interim_ms": summarize(self.first_ms).as_dict(),
            "gap_ms": gaps.as_dict(),
            "target_gap_ms": TARGET_GAP_MS,
            "gap_p90": verdict(gaps.p90, TARGET_GAP_MS),
        }


def cadence(turns: Sequence[PageTurn], events: Sequence[Event]) -> Cadence:
    """``events`` carry ``at`` in epoch ms (``page_audio.epoch_events``)."""
    found = Cadence()
    for turn in turns:
        if turn.mic_speech_start is None or turn.turn_id is None:
            continue
        final_at = _first_final_at(events, turn.turn_id)
        if final_at is None:
            continue
        times = [
            float(e["at"])
            for e in events
            if e.get("type") == "transcript"
            and not e.get("final")
            and not e.get("speculative")
            and turn.mic_speech_start <= e["at"] < final_at
        ]
        if not times:
            continue
        found.first_ms.append(round(times[0] - turn.mic_speech_start, 1))
        found.gap_ms += [round(later - earlier, 1) for earlier, later in itertools.pairwise(times)]
    return found


def _first_final_at(events: Sequence[Event], turn_id: int) -> float | None:
    return next(
        (
            float(e["at"])
            for e in events
            if e.get("type") == "transcript"
            and e.get("turn_id") == turn_id
            and (e.get("final") or e.get("speculative"))
        ),
        None,
    )


def table_lines(figures: dict[str, Any] | None) -> list[str]:
    if not figures:
        return []
    gaps, first = figures["gap_ms"], figures["first_interim_ms"]
    if not gaps["count"]:
        return ["interim transcripts while speaking: none timed"]
    return [
        f"interim transcripts while speaking: gap p50 {gaps['p50']:.0f} ms, p90 {gaps['p90']:.0f} ms, "
        f"max {gaps['max']:.0f} ms over {gaps['count']} gaps   target p90 <= {TARGET_GAP_MS:.0f} ms   "
        f"{figures['gap_p90']}",
        f"  first interim after the start of speech: p50 {first['p50']:.0f} ms, p90 {first['p90']:.0f} ms",
    ]
