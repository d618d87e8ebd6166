"""Every subject on the bus, with the message union it carries.

Per-session subjects end in the session id (``va.audio.in.<session>``), so a
consumer may subscribe to one session or to all (``va.audio.in.*``). Work that
any replica may take (an LLM request, a TTS chunk) goes to one shared subject
read through a queue group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proto import messages as m

PREFIX = "va"


@dataclass(frozen=True)
class Channel:
    """A subject family and the union of message types it carries."""

    name: str
    union: Any
    per_session: bool = True
    queue_group: str | None = None

    @property
    def base(self) -> str:
        return f"{PREFIX}.{self.name}"

    def subject(self, session_id: str | None = None) -> str:
        if not self.per_session:
            return self.base
        if not session_id or "." in session_id or "*" in session_id or ">" in session_id:
            raise ValueError(f"invalid session id for a subject: {session_id!r}")
        return f"{self.base}.{session_id}"

    @property
    def wildcard(self) -> str:
        return f"{self.base}.*" if self.per_session else self.base


SESSION = Channel("session", m.SessionMsg)
AUDIO_IN = Channel("audio.in", m.AudioInMsg)
VAD = Channel("vad", m.VadMsg)
TRANSCRIPT = Channel("transcript", m.TranscriptMsg)
LLM_REQUEST = Channel("llm.request", m.LlmRequestMsg, per_session=False, queue_group="llm")
LLM_STREAM = Channel("llm.stream", m.LlmStreamMsg)
TTS_REQUEST = Channel("tts.request", m.TtsRequestMsg, per_session=False, queue_group="tts")
AUDIO_OUT = Channel("audio.out", m.AudioOutMsg)
CONTROL = Channel("control", m.ControlMsg)
PLAYOUT = Channel("playout", m.PlayoutMsg)
STATE = Channel("state", m.StateMsg)

ALL_CHANNELS = (
    SESSION,
    AUDIO_IN,
    VAD,
    TRANSCRIPT,
    LLM_REQUEST,
    LLM_STREAM,
    TTS_REQUEST,
    AUDIO_OUT,
    CONTROL,
    PLAYOUT,
    STATE,
)


def session_of(subject: str) -> str:
    """The session id at the end of a per-session subject."""
    return subject.rsplit(".", 1)[-1]
