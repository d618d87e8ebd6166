"""Utterance endpointing on VAD probabilities: pure logic on virtual time.

The caller feeds 20 ms frames with their speech probability and capture time;
the endpointer decides when an utterance starts and ends and which frames
belong to it. Nothing here reads a clock, so a 30 s conversation is tested in
microseconds.

- Start: probability >= ``threshold`` for ``min_speech_ms`` in a row. The turn
  number goes up by one and the frames from ``preroll_ms`` before the first
  voiced frame are released, so the recognizer hears the onset.
- End: ``silence_ms`` of silence (probability below ``neg_threshold``, the
  silence clock only restarting on a frame >= ``threshold``), or the utterance
  reaching ``max_utterance_ms``.
- Between utterances no frame is released.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

EPSILON = 1e-6


@dataclass(frozen=True)
class EndpointConfig:
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_ms: int = 100
    preroll_ms: int = 300
    silence_ms: int = 400
    max_utterance_ms: int = 15000
    frame_ms: int = 20


@dataclass(frozen=True)
class Started:
    turn_id: int
    at: float  # start of the first voiced frame


@dataclass(frozen=True)
class Frame:
    turn_id: int
    pcm: bytes
    captured_at: float


@dataclass(frozen=True)
class Ended:
    turn_id: int
    at: float  # end of the last voiced frame
    decided_at: float  # end of the frame that completed the silence
    frame_count: int  # Frames released for this turn
    forced: bool = False  # max_utterance_ms reached


Event = Started | Frame | Ended


class Endpointer:
    """Turns (frame, probability, time) into Started / Frame / Ended events."""

    def __init__(self, config: EndpointConfig | None = None, last_turn_id: int = 0) -> None:
        self.config = config or EndpointConfig()
        self.turn_id = last_turn_id
        self.speaking = False
        size = math.ceil((self.config.preroll_ms + self.config.min_speech_ms) / self.config.frame_ms) + 1
        self._recent: deque[tuple[bytes, float]] = deque(maxlen=size)
        self._run_start: float | None = None  # first frame of the current voiced run
        self._run_ms = 0
        self._speech_start = 0.0
        self._last_voiced_end = 0.0
        self._silence_ms = 0
        self._sent = 0

    def push(self, pcm: bytes, probability: float, at: float) -> list[Event]:
        """One frame of audio captured at ``at`` (seconds) with its probability."""
        if self.speaking:
            return self._while_speaking(pcm, probability, at)
        return self._while_idle(pcm, probability, at)

    def close(self, now: float) -> Ended | None:
        """End an utterance still open when the audio stops (session closed)."""
        if not self.speaking:
            return None
        return self._end(now, forced=True)

    def _while_idle(self, pcm: bytes, probability: float, at: float) -> list[Event]:
        self._recent.append((pcm, at))
        if probability < self.config.threshold:
            self._run_start, self._run_ms = None, 0
            return []
        if self._run_start is None:
            self._run_start = at
        self._run_ms += self.config.frame_ms
        if self._run_ms < self.config.min_speech_ms:
            return []
        return self._start(self._run_start, at)

    def _start(self, first_voiced: float, at: float) -> list[Event]:
        self.turn_id += 1
        self.speaking = True
        self._speech_start = first_voiced
        self._last_voiced_end = at + self.config.frame_ms / 1000
        self._silence_ms = 0
        earliest = first_voiced - self.config.preroll_ms / 1000 - EPSILON
        events: list[Event] = [Started(self.turn_id, first_voiced)]
        events += [Frame(self.turn_id, p, t) for p, t in self._recent if t >= earliest]
        self._sent = len(events) - 1
        self._recent.clear()
        self._run_start, self._run_ms = None, 0
        return events

    def _while_speaking(self, pcm: bytes, probability: float, at: float) -> list[Event]:
        frame_end = at + self.config.frame_ms / 1000
        self._sent += 1
        events: list[Event] = [Frame(self.turn_id, pcm, at)]
        if probability >= self.config.threshold:
            self._last_voiced_end = frame_end
            self._silence_ms = 0
        elif probability < self.config.neg_threshold or self._silence_ms > 0:
            self._silence_ms += self.config.frame_ms
        if self._silence_ms >= self.config.silence_ms:
            events.append(self._end(frame_end, forced=False))
        elif (frame_end - self._speech_start) * 1000 >= self.config.max_utterance_ms - EPSILON:
            events.append(self._end(frame_end, forced=True))
        return events

    def _end(self, decided_at: float, forced: bool) -> Ended:
        self.speaking = False
        self._silence_ms = 0
        ended = Ended(self.turn_id, self._last_voiced_end, decided_at, self._sent, forced)
        self._sent = 0
        return ended
