"""Utterance endpointing on VAD probabilities: pure logic on virtual time.

The caller feeds 20 ms frames with their speech probability and capture time,
and the newest transcript of the utterance as it arrives; the endpointer decides
when an utterance starts, pauses, resumes and ends, and which frames belong to
which generation. Nothing here reads a clock, so a 30 s conversation is tested
in microseconds.

- Start: probability >= ``threshold`` for ``min_speech_ms`` in a row. The turn
  number goes up by one and the frames from ``preroll_ms`` before the first
  voiced frame are released, so the recognizer hears the onset.
- Pause: after ``speculate_after_ms`` of silence (probability below
  ``neg_threshold``; 20 ms = the first silent frame) the generation is paused:
  the rest of the agent may start on it speculatively.
- Resume: while paused, ``min_speech_ms`` of voiced frames in a row continue the
  utterance as a new generation (``Started.continues``). Shorter voiced blips (a
  click, a breath) neither resume nor end anything: the silence clock stops
  while they last and goes on after.
- End: silence as long as the adaptive threshold (``silence_for``: shorter when
  the transcript reads complete, longer when it trails off), or the utterance
  reaching ``max_utterance_ms``.
- Between utterances no frame is released.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from services.edge.completeness import DEFAULT_TRAILING_WORDS, Reading, normalize_words, reading

EPSILON = 1e-6


@dataclass(frozen=True)
class EndpointConfig:
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_ms: int = 100
    preroll_ms: int = 300
    silence_ms: int = 400  # the transcript says nothing either way
    silence_complete_ms: int = 400  # it reads as a finished sentence or question
    silence_incomplete_ms: int = 400  # it trails off
    trailing_words: frozenset[str] = field(default_factory=lambda: normalize_words(DEFAULT_TRAILING_WORDS))
    # Silence before a pause is announced for speculation; 0 = never speculate.
    speculate_after_ms: int = 0
    max_utterance_ms: int = 15000
    frame_ms: int = 20

    def silence_for(self, text: str | None) -> int:
        """The silence that ends a turn whose transcript so far is ``text``."""
        return self._by_reading(reading(text, self.trailing_words))

    def _by_reading(self, read: Reading) -> int:
        if read == "complete":
            return self.silence_complete_ms
        if read == "incomplete":
            return self.silence_incomplete_ms
        return self.silence_ms


@dataclass(frozen=True)
class Started:
    turn_id: int
    at: float  # start of the first voiced frame (of this generation)
    continues: int = 0  # the paused generation this one continues; 0 = a new utterance


@dataclass(frozen=True)
class Frame:
    turn_id: int
    pcm: bytes
    captured_at: float


@dataclass(frozen=True)
class Paused:
    turn_id: int
    at: float  # end of the last voiced frame
    decided_at: float  # end of the frame that made the pause
    frame_count: int  # Frames released for this generation so far


@dataclass(frozen=True)
class Ended:
    turn_id: int
    at: float  # end of the last voiced frame
    decided_at: float  # end of the frame that completed the silence
    frame_count: int  # Frames released for this generation
    forced: bool = False  # max_utterance_ms reached
    paused: bool = False  # a Paused of this generation came first: the speculation is confirmed


Event = Started | Frame | Paused | Ended


@dataclass
class _Transcript:
    text: str
    heard_until: float  # capture time its audio reached; inf for a final


class Endpointer:
    """Turns (frame, probability, time) into Started / Frame / Paused / Ended events."""

    def __init__(self, config: EndpointConfig | None = None, last_turn_id: int = 0) -> None:
        self.config = config or EndpointConfig()
        self.turn_id = last_turn_id
        self.speaking = False
        self.paused = False
        size = math.ceil((self.config.preroll_ms + self.config.min_speech_ms) / self.config.frame_ms) + 1
        self._recent: deque[tuple[bytes, float]] = deque(maxlen=size)
        self._run_start: float | None = None  # first frame of the current voiced run
        self._run_ms = 0
        self._speech_start = 0.0
        self._last_voiced_end = 0.0
        self._silence_ms = 0
        self._sent = 0
        self._transcript: _Transcript | None = None

    def push(self, pcm: bytes, probability: float, at: float) -> list[Event]:
        """One frame of audio captured at ``at`` (seconds) with its probability."""
        if self.speaking:
            return self._while_speaking(pcm, probability, at)
        return self._while_idle(pcm, probability, at)

    def heard(self, turn_id: int, text: str, heard_until: float) -> None:
        """A transcript of generation ``turn_id``, which heard the audio up to
        ``heard_until`` (capture time; ``math.inf`` for a final). One that heard
        less than the transcript kept is ignored: stt's two lanes can publish the
        partial that was in flight at the pause after the speculative final, and
        its stale words ("What time") would lengthen the silence the final cut."""
        if not self.speaking or turn_id != self.turn_id:
            return
        kept = self._transcript
        if kept is None or heard_until >= kept.heard_until:
            self._transcript = _Transcript(text, heard_until)

    def end_silence_ms(self) -> int:
        """The silence that ends the current generation, given its transcript.

        A transcript that heard every voiced frame decides alone. One that did
        not (a partial from before the last words) may only lengthen the wait:
        a stale "I want to" trails off, but a stale "I want." does not mean
        the user stopped there. While paused for speculation, the wait without
        such a transcript is the trailing-off one, until the speculative final
        comes.
        """
        transcript = self._transcript
        if transcript is not None and transcript.heard_until >= self._last_voiced_end - EPSILON:
            return self.config.silence_for(transcript.text)
        wait = self.config.silence_ms
        if transcript is not None:
            wait = max(self.config.silence_for(transcript.text), wait)
        if self.paused:
            # The speculative final is on its way and only its words can tell a user who
            # trails off ("he might...") from one who is done. Until it comes, wait as
            # for the former: no reply can start before that final anyway, so ending the
            # turn sooner gains nothing, and on a slow machine (a final ~450 ms after the
            # pause) it ended turns at the plain silence while the user meant to go on.
            wait = max(wait, self.config.silence_incomplete_ms)
        return wait

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
        self._new_generation()
        self._speech_start = first_voiced
        self._last_voiced_end = at + self.config.frame_ms / 1000
        earliest = first_voiced - self.config.preroll_ms / 1000 - EPSILON
        events: list[Event] = [Started(self.turn_id, first_voiced)]
        events += [Frame(self.turn_id, p, t) for p, t in self._recent if t >= earliest]
        self._sent = len(events) - 1
        self._recent.clear()
        self._run_start, self._run_ms = None, 0
        return events

    def _new_generation(self) -> None:
        self.turn_id += 1
        self.speaking = True
        self.paused = False
        self._silence_ms = 0
        self._sent = 0
        self._transcript = None  # a transcript of another generation says nothing of this one

    def _while_speaking(self, pcm: bytes, probability: float, at: float) -> list[Event]:
        frame_end = at + self.config.frame_ms / 1000
        events: list[Event] = []
        if probability >= self.config.threshold:
            events += self._voiced(at, frame_end)
        else:
            self._run_start, self._run_ms = None, 0
            if probability < self.config.neg_threshold or self._silence_ms > 0:
                self._silence_ms += self.config.frame_ms
        self._sent += 1
        events.append(Frame(self.turn_id, pcm, at))
        if self._silence_ms >= self.end_silence_ms():
            events.append(self._end(frame_end, forced=False))
        elif (frame_end - self._speech_start) * 1000 >= self.config.max_utterance_ms - EPSILON:
            events.append(self._end(frame_end, forced=True))
        elif self._pause_due():
            self.paused = True
            events.append(Paused(self.turn_id, self._last_voiced_end, frame_end, self._sent))
        return events

    def _voiced(self, at: float, frame_end: float) -> list[Event]:
        """A voiced frame: speech goes on, or resumes after a pause once sustained."""
        if not self.paused:
            self._last_voiced_end = frame_end
            self._silence_ms = 0
            return []
        if self._run_start is None:
            self._run_start = at
        self._run_ms += self.config.frame_ms
        if self._run_ms < self.config.min_speech_ms:
            return []  # a blip so far: the silence clock waits
        paused_turn, first_voiced = self.turn_id, self._run_start
        self._new_generation()
        self._last_voiced_end = frame_end
        self._run_start, self._run_ms = None, 0
        return [Started(self.turn_id, first_voiced, continues=paused_turn)]

    def _pause_due(self) -> bool:
        after = self.config.speculate_after_ms
        return after > 0 and not self.paused and self._silence_ms >= after

    def _end(self, decided_at: float, forced: bool) -> Ended:
        ended = Ended(self.turn_id, self._last_voiced_end, decided_at, self._sent, forced, self.paused)
        self.speaking = False
        self.paused = False
        self._silence_ms = 0
        self._sent = 0
        self._transcript = None
        self._run_start, self._run_ms = None, 0
        return ended
