"""When the user's speech over the agent's audio cuts it off (barge-in).

Pure logic, no clock: the caller passes each microphone frame's VAD probability
with its capture time, and the transcripts of the current utterance. A cut needs
all of:

- interruptions allowed globally (``allowed``) and by the audio playing now
  (its AudioChunk's ``allow_interruptions``: the caller passes that in);
- ``speech_ms`` of sustained voiced speech: one run of frames at or above
  ``threshold``, measured from its first frame to its last; a frame below
  ``neg_threshold`` breaks the run, one in between does not (it counts once
  voiced speech follows). Once a run is long enough, the utterance
  qualifies until it ends (a transcript may come after the run);
- with ``min_words`` > 0, that many words in the utterance's newest transcript.

A cough or a short "mhm" over the agent's voice therefore never cuts it.
What happens then (pause, then cut or resume) is services/edge/barge_in.py's
business; once the agent resumed over an utterance (``resumed``), that
utterance does not interrupt it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EPSILON = 1e-6
_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class InterruptConfig:
    speech_ms: int = 300
    min_words: int = 0
    allowed: bool = True
    threshold: float = 0.5
    neg_threshold: float = 0.35
    frame_ms: int = 20


class InterruptDecider:
    """Per session: is the user's speech now an interruption of the agent?"""

    def __init__(self, config: InterruptConfig | None = None) -> None:
        self.config = config or InterruptConfig()
        self._run_start: float | None = None
        self._run_end = 0.0
        self._qualified = False  # this utterance had speech_ms of sustained speech
        self._onset = 0.0  # capture time of the first frame of the run that qualified
        self._spent = False  # the agent resumed over this utterance: it no longer counts
        self._utterance = 0
        self._words = 0

    @property
    def sustained_ms(self) -> float:
        """Length of the current voiced run (0 when there is none)."""
        if self._run_start is None:
            return 0.0
        return (self._run_end - self._run_start) * 1000

    @property
    def words(self) -> int:
        return self._words

    @property
    def utterance(self) -> int:
        """The user's current generation (turn id)."""
        return self._utterance

    @property
    def onset(self) -> float:
        """Capture time where the voiced run that made the utterance qualify began:
        the start of the interrupting speech, for the stop-time metric."""
        return self._onset

    def push(self, probability: float, at: float) -> None:
        """One microphone frame captured at ``at`` (seconds) and its VAD probability."""
        config = self.config
        if probability >= config.threshold:
            run_start = at if self._run_start is None else self._run_start
            self._run_start = run_start
            self._run_end = at + config.frame_ms / 1000
            if self.sustained_ms >= config.speech_ms - EPSILON and not self._qualified:
                self._qualified = True
                self._onset = run_start
        elif probability < config.neg_threshold:
            self._run_start = None

    def started(self, turn_id: int, continues: int = 0) -> None:
        """Generation ``turn_id`` began: transcripts of older ones no longer count.
        One that ``continues`` the current generation keeps its words until its own
        transcript (which covers both) comes."""
        if not continues or continues != self._utterance:
            self._words = 0
            self._spent = False
        self._utterance = turn_id

    def heard(self, turn_id: int, text: str) -> None:
        """The newest transcript of generation ``turn_id``."""
        if turn_id == self._utterance:
            self._words = count_words(text)

    def ended(self) -> None:
        """The utterance is over: the next one must qualify anew."""
        self._qualified = False
        self._spent = False
        self._words = 0

    def decide(self, interruptible: bool) -> bool:
        """True: cut the agent's audio now. ``interruptible``: agent audio is
        playing and its current chunk allows interruptions."""
        config = self.config
        if not (config.allowed and interruptible and self._qualified) or self._spent:
            return False
        return config.min_words <= 0 or self._words >= config.min_words

    def cut(self) -> None:
        """The agent was cut off: the same speech does not cut the next reply."""
        self._qualified = False

    def resumed(self) -> None:
        """The agent paused for this utterance, then resumed (it said nothing):
        the rest of the utterance, continued generations included, does not
        pause it again; the next utterance may."""
        self._qualified = False
        self._spent = True
