"""What an interruption does to the agent's voice: pause, then cut it or resume.

The interruption decider (services/edge/interruption.py) fires on sustained
speech, before anyone knows what the user said. Cutting the reply right there
throws it away for a cough, a laugh or an "mhm" that lasted 300 ms. So the
voice only pauses: the next 20 ms frame is silent, and the turn's audio and
play position stay in the playout buffer (pieces still arriving are queued).
Then:

- commit: a transcript of the interrupting utterance (partial or final) has
  real words (services/common/backchannel.py: not "mhm", "yeah", "(coughs)";
  with ``min_words``, that many): the turn is flushed as a cut used to be
  (``Committed``, then its ``TurnFinished``); the session publishes the Cancel;
- resume: its confirmed final says nothing, or ``resume_after`` passes with no
  real words since the voice went silent and the user stopped speaking
  (``user_speaking``): playout goes on from the same sample (``Resumed``). The
  clock waits while the user talks: a transcript can lag a long sentence on a
  busy machine, and a cough is over long before. A speculative final that says
  nothing does not resume: the user may go on, and the words would then come in
  the continuation's partials.

``resume_after`` 0 is the old behaviour: the turn is cut at the decision. With
``finish_sentence`` the voice goes silent only at the estimated end of the
sentence being spoken (at most ``finish_sentence_max`` later), and whatever the
transcripts said meanwhile decides there; a final that says nothing before
then lets the agent simply go on.

Pure logic, no clock: ``next_frame(now)`` wraps the buffer's and is where the
timeout is checked, so the track's 20 ms pulls drive it, and tests drive it on
virtual time. A Cancel from the bus or a newer turn's audio ends the turn under
it: the controller notices the turn is gone and forgets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from services.common.backchannel import content_words
from services.edge.playout import Pcm, PlayoutBuffer, PlayoutEvent, TurnFinished, TurnPaused

EPSILON = 1e-6


@dataclass(frozen=True)
class BargeInConfig:
    resume_after: float = 1.5  # seconds paused before resuming; 0 = cut at once
    min_words: int = 0  # above 0, content words a transcript needs to commit
    finish_sentence: bool = False
    finish_sentence_max: float = 2.0  # seconds


@dataclass(frozen=True)
class Paused:
    """The turn's voice went silent for an interruption, ``stop_seconds`` after
    the interrupting speech began."""

    turn_id: int
    stop_seconds: float


@dataclass(frozen=True)
class Resumed:
    """A false interruption: the turn plays on. ``was_paused`` False: it never
    went silent (it was finishing its sentence)."""

    turn_id: int
    reason: str  # "says nothing" or "timeout"
    was_paused: bool


@dataclass(frozen=True)
class Committed:
    """The interruption stands: the turn was flushed; its TurnFinished follows.
    ``stop_seconds`` when this commit silenced the voice (no pause came first)."""

    turn_id: int
    heard_text: str
    stop_seconds: float | None


BargeInEvent = Paused | Resumed | Committed
OutEvent = PlayoutEvent | BargeInEvent


class Phase(Enum):
    IDLE = "idle"
    STOPPING = "stopping"  # a pause is asked for, the voice not yet silent
    PAUSED = "paused"


class BargeIn:
    """One session's playout as the track sees it, with interruptions handled."""

    def __init__(self, buffer: PlayoutBuffer, config: BargeInConfig | None = None) -> None:
        self.buffer = buffer
        self.config = config or BargeInConfig()
        self._phase = Phase.IDLE
        self._turn = -1  # the interrupted turn
        self._utterance = 0  # the interrupting generation (and its continuations)
        self._onset = 0.0
        self._silenced_at = 0.0
        self._quiet_since: float | None = 0.0  # when the user stopped speaking; None: speaking
        self._commit_due = False  # real words heard while stopping: commit at the stop
        self._text_turn = -1  # the newest transcript of the user, and its generation
        self._text = ""

    @property
    def phase(self) -> Phase:
        self._sync()
        return self._phase

    @property
    def busy(self) -> bool:
        """An interruption is being handled: the decider must not fire again."""
        return self.phase is not Phase.IDLE

    def interrupt(self, utterance: int, onset: float, now: float) -> list[OutEvent]:
        """The decider fired on generation ``utterance``, speech from ``onset``."""
        turn = self.buffer.turn_id
        if turn is None or self.busy:
            return []
        self._turn, self._utterance, self._onset = turn, utterance, onset
        self._quiet_since = None  # the decision fired on speech
        self._commit_due = self._text_turn >= utterance and self._says_enough(self._text)
        if not self.config.finish_sentence:
            if self._commit_due or self.config.resume_after <= 0:
                return self._commit(now - onset)
            self.buffer.pause(0)
        else:
            samples_per_second = self.buffer.frame_samples * 50  # 20 ms frames
            limit = round(self.config.finish_sentence_max * samples_per_second)
            self.buffer.pause(self.buffer.until_sentence_end(limit))
        self._phase = Phase.STOPPING
        return []

    def heard(self, turn_id: int, text: str, final: bool) -> list[OutEvent]:
        """A transcript of generation ``turn_id``; ``final``: confirmed (not speculative)."""
        if turn_id >= self._text_turn:
            self._text_turn, self._text = turn_id, text
        if self.phase is Phase.IDLE or turn_id < self._utterance:
            return []
        if self._says_enough(text):
            if self._phase is Phase.PAUSED:
                return self._commit(None)
            self._commit_due = True
        elif final:
            return self._resume("says nothing")
        return []

    def user_speaking(self, speaking: bool, now: float) -> None:
        """Whether the user's voice goes on (the VAD, each microphone frame)."""
        if speaking:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = now

    def next_frame(self, now: float) -> tuple[Pcm, list[OutEvent]]:
        """The buffer's next frame; resumes first when the pause has timed out."""
        events: list[OutEvent] = []
        if self._timed_out(now):
            events += self._resume("timeout")
        frame, happened = self.buffer.next_frame(now)
        for event in happened:
            if isinstance(event, TurnPaused):
                events += self._went_silent(event.turn_id, now)
            else:
                events.append(event)
        self._sync()
        return frame, events

    def _timed_out(self, now: float) -> bool:
        if self.phase is not Phase.PAUSED or self._quiet_since is None:
            return False
        waited = now - max(self._silenced_at, self._quiet_since)
        return waited >= self.config.resume_after - EPSILON

    def _went_silent(self, turn_id: int, now: float) -> list[OutEvent]:
        if self._phase is not Phase.STOPPING or turn_id != self._turn:
            return []
        stop_seconds = max(0.0, now - self._onset)
        if self._commit_due or self.config.resume_after <= 0:
            return self._commit(stop_seconds)
        self._phase, self._silenced_at = Phase.PAUSED, now
        return [Paused(turn_id, stop_seconds)]

    def _commit(self, stop_seconds: float | None) -> list[OutEvent]:
        self._phase = Phase.IDLE
        flushed = self.buffer.cancel(self._turn)
        heard = next((e.heard_text for e in flushed if isinstance(e, TurnFinished)), "")
        return [Committed(self._turn, heard, stop_seconds), *flushed]

    def _resume(self, reason: str) -> list[OutEvent]:
        was_paused = self._phase is Phase.PAUSED
        self._phase = Phase.IDLE
        self.buffer.resume()
        return [Resumed(self._turn, reason, was_paused)]

    def _says_enough(self, text: str) -> bool:
        return len(content_words(text)) >= max(1, self.config.min_words)

    def _sync(self) -> None:
        """The interrupted turn ended under us (a Cancel, a newer turn, its end):
        nothing is left to pause, resume or cut."""
        if self._phase is not Phase.IDLE and self.buffer.turn_id != self._turn:
            self._phase = Phase.IDLE
