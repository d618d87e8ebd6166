"""What the page heard: per utterance, the end of the user's speech at the microphone,
the turn the edge gave it, and the first reply audio on the remote track. Pure functions.

Times are epoch milliseconds. A timeline is ``[[block start, rms], ...]`` in short
blocks (``block_ms``) from the page's WebAudio taps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.microphone import LOUD_RMS, Placed

Timeline = Sequence[Sequence[float]]
Event = dict[str, Any]

ONSET_WINDOW_MS = 400.0  # an utterance's onset is looked for this far around where it is due
DRIFT = 0.12  # the fake microphone may run this much slower (or faster) than planned
TURN_WAIT_MS = 3000.0  # the edge's end-of-speech event arrives within this after the mic went quiet
EVENT_LEAD_MS = 50.0  # reply audio never reaches the page before its agent_started_speaking event


@dataclass(frozen=True)
class PageTurn:
    """One utterance as the page saw it."""

    utterance: str
    turn_id: int | None  # the edge's turn for it (the last one, if its VAD split it)
    split_turns: list[int]  # every turn the edge made of this utterance
    mic_speech_start: float | None
    mic_speech_end: float | None  # end of the last loud block of the utterance
    reply_start: float | None  # first loud block of the reply on the remote track
    latency_event: Event | None  # the edge's `latency` event for the turn

    @property
    def voice_to_voice_ms(self) -> float | None:
        if self.mic_speech_end is None or self.reply_start is None:
            return None
        return round(self.reply_start - self.mic_speech_end, 1)


def first_loud(timeline: Timeline, after: float, threshold: float = LOUD_RMS) -> float | None:
    """Start of the first block at or after ``after`` louder than ``threshold``."""
    return next((t for t, rms in timeline if t >= after and rms > threshold), None)


def loud_span(
    timeline: Timeline, start: float, end: float, block_ms: float, threshold: float = LOUD_RMS
) -> tuple[float, float] | None:
    """(start of the first, end of the last) loud block that starts within [start, end]."""
    loud = [t for t, rms in timeline if start <= t <= end and rms > threshold]
    if not loud:
        return None
    return loud[0], loud[-1] + block_ms


def epoch_events(events: Sequence[Event], time_origin: float) -> list[Event]:
    """The page's events with ``at``: receivedAt (performance.now()) as epoch ms."""
    return [{**e, "at": time_origin + float(e.get("receivedAt", 0.0))} for e in events]


def onsets(plan: Sequence[Placed], mic: Timeline, threshold: float = LOUD_RMS) -> list[float | None]:
    """Where each planned utterance begins at the microphone (epoch ms), or None if not found.

    Chromium's fake microphone can play the WAV slower than real time on a loaded
    machine (we measured 2.5 s of drift over 110 s, and 4 s within a minute with
    another process busy), so an utterance is looked for from the previous one
    found, at the planned distance give or take a margin that grows with it, not
    at one fixed origin. The first is the first loud block.
    """
    found: list[float | None] = []
    previous: tuple[float, float] | None = None  # (onset found, planned start) in ms
    for placed in plan:
        planned = placed.speech_start_s * 1000
        low, high = float("-inf"), float("inf")
        if previous is not None:
            gap = planned - previous[1]
            low = previous[0] + gap * (1 - DRIFT) - ONSET_WINDOW_MS
            high = previous[0] + gap * (1 + DRIFT) + ONSET_WINDOW_MS
        onset = next((t for t, rms in mic if low <= t <= high and rms > threshold), None)
        found.append(onset)
        if onset is not None:
            previous = (onset, planned)
    return found


def page_turns(
    plan: Sequence[Placed],
    mic: Timeline,
    remote: Timeline,
    events: Sequence[Event],
    block_ms: float,
    threshold: float = LOUD_RMS,
) -> list[PageTurn]:
    """Each planned utterance with its speech end, its turn and the start of its reply.

    ``events`` carry ``at`` in epoch ms (see ``epoch_events``).
    """
    found = onsets(plan, mic, threshold)
    turns: list[PageTurn] = []
    for index, (placed, onset) in enumerate(zip(plan, found, strict=True)):
        span = None
        if onset is not None:
            length = (placed.speech_end_s - placed.speech_start_s) * 1000
            until = onset + length * (1 + DRIFT) + ONSET_WINDOW_MS
            following = next((o for o in found[index + 1 :] if o is not None), None)
            if following is not None:
                until = min(until, following - block_ms)
            span = loud_span(mic, onset, until, block_ms, threshold)
        if span is None:
            turns.append(PageTurn(placed.name, None, [], None, None, None, None))
            continue
        start, end = span
        split = [
            int(e["turn_id"])
            for e in events
            if e.get("type") == "user_stopped_speaking" and start <= e["at"] <= end + TURN_WAIT_MS
        ]
        turn_id = split[-1] if split else None
        reply_start = None
        if turn_id is not None:
            started = _event(events, "agent_started_speaking", turn_id)
            if started is not None:
                reply_start = first_loud(remote, max(end, started["at"] - EVENT_LEAD_MS), threshold)
        latency = _event(events, "latency", turn_id) if turn_id is not None else None
        turns.append(PageTurn(placed.name, turn_id, split, start, end, reply_start, latency))
    return turns


def _event(events: Sequence[Event], kind: str, turn_id: int) -> Event | None:
    return next((e for e in events if e.get("type") == kind and e.get("turn_id") == turn_id), None)


def jitter_buffer(stats: Sequence[dict[str, float]]) -> dict[str, float] | None:
    """Chromium's receive jitter buffer for the agent's voice, averaged over the call
    (getStats inbound-rtp: cumulative seconds over emitted samples), in ms."""
    for entry in stats:
        emitted = entry.get("jitterBufferEmittedCount") or 0
        if emitted <= 0:
            continue
        return {
            name: round(1000.0 * float(entry.get(field) or 0.0) / emitted, 1)
            for name, field in (
                ("delay_ms", "jitterBufferDelay"),
                ("target_ms", "jitterBufferTargetDelay"),
                ("minimum_ms", "jitterBufferMinimumDelay"),
            )
        }
    return None
