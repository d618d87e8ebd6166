"""Which decode to run next, over every session this replica serves.

Pure logic on a caller-supplied clock. Rules:
- one decode at a time: ``next_job`` hands out nothing until ``finish``;
- a ready final goes before any partial (the user is waiting for the reply);
- a final whose utterance a partial already heard in full reuses its text;
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

from proto.messages import AudioFrame, SpeechEnded, SpeechStarted
from services.stt.stream import BYTES_PER_SAMPLE, SAMPLE_RATE, UtteranceStream

# Closed sessions remembered, so that late frames do not bring them back.
CLOSED_MEMORY = 1024


class Outcome(enum.StrEnum):
    """What became of a message; anything but ACCEPTED is a drop reason."""

    ACCEPTED = "accepted"
    STALE = "stale"
    LATE = "late"
    SESSION_ENDED = "session_ended"
    BAD_AUDIO = "bad_audio"


@dataclass(frozen=True)
class Job:
    kind: Literal["partial", "final"]
    session_id: str
    turn_id: int
    samples: np.ndarray
    speech_ended: SpeechEnded | None = None
    ended_received_at: float = 0.0
    heard_until: float = 0.0  # partial: edge capture time of the end of its audio
    text: str | None = None  # final: already known from a partial, no decode needed


@dataclass
class _Session:
    last_seen: float
    turn: int = -1  # newest turn with audio
    finalized: int = -1  # newest turn whose final was handed out
    partial_at: float = 0.0  # when this session last got a partial: fairness
    utterances: dict[int, UtteranceStream] = field(default_factory=dict)


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
        self._running: Job | None = None

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
        return Outcome.ACCEPTED

    def on_speech_started(self, message: SpeechStarted, now: float) -> Outcome:
        session = self._touch(message.session_id, now)
        if session is None:
            return Outcome.SESSION_ENDED
        return self._refuse(session, message.turn_id) or Outcome.ACCEPTED

    def on_speech_ended(self, message: SpeechEnded, now: float) -> Outcome:
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
        utterance.end(message, now)
        return Outcome.ACCEPTED

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

    def next_job(self, now: float) -> Job | None:
        """The decode to run now, or None (busy, or nothing due)."""
        if self._running is not None:
            return None
        self._drop_orphans(now)
        job = self._take_final(now) or self._take_partial(now)
        self._running = job
        return job

    def finish(self, job: Job, text: str | None = None) -> None:
        """``job`` is over; ``text`` is a partial's result (None if it failed)."""
        if self._running is job:
            self._running = None
        session = self._sessions.get(job.session_id)
        utterance = session.utterances.get(job.turn_id) if session else None
        if job.kind == "partial" and text is not None and utterance is not None:
            utterance.partial_decoded(job.heard_until, text)

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
        return Job(
            "final",
            sid,
            utterance.turn_id,
            utterance.samples(),
            speech_ended=utterance.ended,
            ended_received_at=utterance.ended_received_at,
            text=utterance.text_for_final() if self._reuse_partials else None,
        )

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
        return Job("partial", sid, utterance.turn_id, utterance.take_partial(), heard_until=heard_until)
