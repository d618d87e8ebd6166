"""Which decode to run next, over every session this replica serves.

Pure logic on a caller-supplied clock. Rules:
- one decode at a time per lane: ``next_job`` hands a lane nothing until
  ``finish``. The lane "any" takes every kind; with two lanes, "urgent" takes
  the finals and speculative finals, "partial" the partials, so a final never
  waits for a partial in flight;
- a ready final goes first (the user is waiting for the reply), then a
  speculative final (the user paused: the reply may start now), then partials;
- a final reuses the text of its generation's speculative final, or of a
  partial that already heard the whole utterance;
- a generation that continues a paused one takes over its audio once every
  frame of the paused one is in (the first frame of the new one proves it);
- partials rotate over the sessions, the longest-waiting first, and a partial
  snapshots the audio when it starts, so it is never queued stale;
- messages of a turn older than the session's newest (the newest turn with
  audio) are stale; messages of a turn whose final has been taken are late.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from proto.messages import AudioFrame, SpeechEnded, SpeechPaused, SpeechStarted
from services.stt.stream import BYTES_PER_SAMPLE, SAMPLE_RATE, HeardBefore, UtteranceStream

# Closed sessions remembered, so that late frames do not bring them back.
CLOSED_MEMORY = 1024


class Outcome(enum.StrEnum):
    """What became of a message; anything but ACCEPTED is a drop reason."""

    ACCEPTED = "accepted"
    STALE = "stale"
    LATE = "late"
    SESSION_ENDED = "session_ended"
    BAD_AUDIO = "bad_audio"


Lane = Literal["any", "urgent", "partial"]


@dataclass(frozen=True)
class Job:
    kind: Literal["partial", "speculative", "final"]
    session_id: str
    turn_id: int
    samples: np.ndarray
    speech_ended: SpeechEnded | None = None
    ended_received_at: float = 0.0
    heard_until: float = 0.0  # edge capture time of the end of its audio
    text: str | None = None  # final: already known (speculative final or partial), no decode needed
    paused: SpeechPaused | None = None  # speculative: the pause it speculates on
    heard_before: HeardBefore | None = None  # the utterance's newest partial when the job started


@dataclass
class _Session:
    last_seen: float
    turn: int = -1  # newest turn with audio
    finalized: int = -1  # newest turn whose final was handed out
    partial_at: float = 0.0  # when this session last got a partial: fairness
    utterances: dict[int, UtteranceStream] = field(default_factory=dict)
    continues: dict[int, int] = field(default_factory=dict)  # generation -> the paused one it continues


class DecodePlanner:
    def __init__(
        self,
        *,
        partial_interval_s: float,
        final_wait_s: float,
        session_idle_s: float,
        reuse_partials: bool = True,
    ) -> None:
        self._partial_interval_s = partial_interval_s
        self._reuse_partials = reuse_partials
        self._final_wait_s = final_wait_s
        self._idle_s = session_idle_s
        self._sessions: dict[str, _Session] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._running: dict[Lane, Job] = {}

    # --- sessions -----------------------------------------------------------

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    def is_open(self, session_id: str) -> bool:
        return session_id in self._sessions

    def open(self, session_id: str, now: float) -> None:
        self._closed.pop(session_id, None)
        self._touch(session_id, now)

    def close(self, session_id: str) -> bool:
        """Forget the session and its audio; False if it was not open."""
        self._closed[session_id] = None
        while len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)
        return self._sessions.pop(session_id, None) is not None

    def expire(self, now: float) -> list[str]:
        """Drop sessions silent for longer than the idle limit (their edge died)."""
        idle = [sid for sid, s in self._sessions.items() if now - s.last_seen > self._idle_s]
        for sid in idle:
            del self._sessions[sid]
        return idle

    def _touch(self, session_id: str, now: float) -> _Session | None:
        # Any message opens its session: SessionStarted travels on another
        # subscription and may be handled after the first frames.
        if session_id in self._closed:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session(last_seen=now, partial_at=now)
        session.last_seen = now
        return session

    # --- messages -----------------------------------------------------------

    def on_frame(self, frame: AudioFrame, now: float) -> Outcome:
        if frame.sample_rate != SAMPLE_RATE or len(frame.pcm) % BYTES_PER_SAMPLE:
            return Outcome.BAD_AUDIO
        session = self._touch(frame.session_id, now)
        if session is None:
            return Outcome.SESSION_ENDED
        turn_id = frame.turn_id
        refused = self._refuse(session, turn_id)
        if refused is not None:
            return refused
        if turn_id > session.turn:
            # Only a frame moves the turn on: the audio subject is in order, so
            # a frame of turn N+1 proves every frame of turn N is in. A VAD
            # message (another subscription) may overtake audio still queued.
            for older_turn, older in session.utterances.items():
                if older_turn < turn_id:
                    older.supersede(now)
            session.turn = turn_id
        self._utterance(session, turn_id).add(frame.pcm, frame.captured_at)
        self._fold(session, turn_id)
        return Outcome.ACCEPTED

    def on_speech_started(self, message: SpeechStarted, now: float) -> Outcome:
        session = self._touch(message.session_id, now)
        if session is None:
            return Outcome.SESSION_ENDED
        refused = self._refuse(session, message.turn_id)
        if refused is None and message.continues:
            session.continues[message.turn_id] = message.continues
            self._fold(session, message.turn_id)
        return refused or Outcome.ACCEPTED

    def on_speech_paused(self, message: SpeechPaused, now: float) -> Outcome:
        return self._on_vad_of_utterance(message, now)

    def on_speech_ended(self, message: SpeechEnded, now: float) -> Outcome:
        return self._on_vad_of_utterance(message, now)

    def _on_vad_of_utterance(self, message: SpeechPaused | SpeechEnded, now: float) -> Outcome:
        session = self._touch(message.session_id, now)
        if session is None:
            return Outcome.SESSION_ENDED
        # A superseded utterance still waits for its own SpeechEnded.
        utterance = session.utterances.get(message.turn_id)
        if utterance is None:
            refused = self._refuse(session, message.turn_id)
            if refused is not None:
                return refused
            utterance = self._utterance(session, message.turn_id)  # its frames are on their way
        if isinstance(message, SpeechPaused):
            utterance.pause(message, now)
        else:
            utterance.end(message, now)
        return Outcome.ACCEPTED

    def _fold(self, session: _Session, turn_id: int) -> None:
        """Give ``turn_id`` the audio of the paused generation it continues, once
        all of that one's frames are in: the audio subject is in order, so a
        frame of ``turn_id`` proves it. Until then the paused one keeps its frames."""
        previous_turn = session.continues.get(turn_id)
        current = session.utterances.get(turn_id)
        if previous_turn is None or current is None or current.frames == 0:
            return
        del session.continues[turn_id]
        previous = session.utterances.pop(previous_turn, None)
        if previous is not None:
            current.carry(previous)

    @staticmethod
    def _refuse(session: _Session, turn_id: int) -> Outcome | None:
        """Why a message of ``turn_id`` is dropped, or None to take it."""
        if turn_id < session.turn:
            return Outcome.STALE
        if turn_id <= session.finalized:
            return Outcome.LATE
        return None

    def _utterance(self, session: _Session, turn_id: int) -> UtteranceStream:
        utterance = session.utterances.get(turn_id)
        if utterance is None:
            utterance = session.utterances[turn_id] = UtteranceStream(
                turn_id, partial_interval_s=self._partial_interval_s, final_wait_s=self._final_wait_s
            )
        return utterance

    # --- decoding -----------------------------------------------------------

    def next_job(self, now: float, lane: Lane = "any") -> Job | None:
        """The decode for ``lane`` to run now, or None (busy, or nothing due)."""
        if lane in self._running:
            return None
        self._drop_orphans(now)
        job: Job | None = None
        if lane != "partial":
            job = self._take_final(now) or self._take_speculation(now)
        if job is None and lane != "urgent":
            job = self._take_partial(now)
        if job is not None:
            self._running[lane] = job
        return job

    def running(self, lane: Lane) -> Job | None:
        """The decode ``lane`` runs now, if any."""
        return self._running.get(lane)

    def finish(self, job: Job, text: str | None = None) -> None:
        """``job`` is over; ``text`` is its result (None if it failed)."""
        for lane, running in list(self._running.items()):
            if running is job:
                del self._running[lane]
        utterance = self._live_utterance(job)
        if text is None or utterance is None:
            return
        if job.kind == "partial":
            utterance.partial_decoded(job.heard_until, text, job.samples.size / SAMPLE_RATE)
        elif job.kind == "speculative":
            utterance.speculative_text = text

    def is_live(self, job: Job) -> bool:
        """A speculative job still speaks for its generation: the user has not
        gone on (continued or superseded), the session is open."""
        utterance = self._live_utterance(job)
        return utterance is not None and not utterance.all_frames_in and utterance.ended is None

    def wants_partial(self, job: Job) -> bool:
        """A partial's text may still be published: its utterance's final is not out
        (with two lanes a partial can finish after it). One that finishes after the
        speculative final is published: its words can be what confirms a barge-in."""
        return self._live_utterance(job) is not None

    def _live_utterance(self, job: Job) -> UtteranceStream | None:
        session = self._sessions.get(job.session_id)
        return session.utterances.get(job.turn_id) if session else None

    def pending(self, now: float) -> int:
        """Decodes due now and not running: what the decode threads owe (the
        queue-depth gauge; a final waiting here delays a reply)."""
        return sum(
            1
            for session in self._sessions.values()
            for u in session.utterances.values()
            if u.final_ready(now) or u.speculation_due(now) or u.partial_due()
        )

    def next_deadline(self) -> float | None:
        """The earliest time something becomes due without a new message."""
        times = [s.last_seen + self._idle_s for s in self._sessions.values()]
        for session in self._sessions.values():
            times.extend(d for u in session.utterances.values() if (d := u.deadline()) is not None)
        return min(times, default=None)

    def _drop_orphans(self, now: float) -> None:
        for session in self._sessions.values():
            for turn_id in [t for t, u in session.utterances.items() if u.orphaned(now)]:
                del session.utterances[turn_id]

    def _take_final(self, now: float) -> Job | None:
        ready = [
            (u.ended_received_at, sid, u)
            for sid, s in self._sessions.items()
            for u in s.utterances.values()
            if u.final_ready(now)
        ]
        if not ready:
            return None
        _, sid, utterance = min(ready, key=lambda r: r[0])
        session = self._sessions[sid]
        del session.utterances[utterance.turn_id]
        session.finalized = max(session.finalized, utterance.turn_id)
        text = utterance.speculative_text
        if text is None and self._reuse_partials:
            text = utterance.text_for_final()
        return Job(
            "final",
            sid,
            utterance.turn_id,
            utterance.samples(),
            speech_ended=utterance.ended,
            ended_received_at=utterance.ended_received_at,
            heard_until=utterance.heard_until,
            text=text,
            heard_before=utterance.heard_before,
        )

    def _take_speculation(self, now: float) -> Job | None:
        for sid, session in self._sessions.items():
            for utterance in session.utterances.values():
                if utterance.speculation_due(now):
                    self._fold(session, utterance.turn_id)
                    heard_until = utterance.heard_until
                    samples = utterance.take_speculation()
                    return Job(
                        "speculative",
                        sid,
                        utterance.turn_id,
                        samples,
                        heard_until=heard_until,
                        paused=utterance.paused,
                        heard_before=utterance.heard_before,
                    )
        return None

    def _take_partial(self, now: float) -> Job | None:
        due = [
            (s.partial_at, sid, u)
            for sid, s in self._sessions.items()
            for u in s.utterances.values()
            if u.partial_due()
        ]
        if not due:
            return None
        _, sid, utterance = min(due, key=lambda d: d[0])
        self._sessions[sid].partial_at = now
        heard_until = utterance.heard_until
        return Job(
            "partial",
            sid,
            utterance.turn_id,
            utterance.take_partial(),
            heard_until=heard_until,
            heard_before=utterance.heard_before,
        )
