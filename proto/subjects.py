"""Every subject on the bus, with the message union it carries.

Per-session subjects end in the session id (``va.audio.in.<session>``), so a
consumer may subscribe to one session or to all (``va.audio.in.*``). Work that
any replica may take (an LLM request, a TTS chunk) goes to one shared subject
read through a queue group. Request/reply subjects (``Endpoint``) carry the
session assignment protocol between the edge and the stt and turns replicas.
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
        return f"{self.base}.{_token(session_id, 'session id')}"

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
# Every replica of an assigned service announces itself and its load here.
REPLICAS = Channel("replicas", m.ReplicaStatusMsg, per_session=False)

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
    REPLICAS,
)


@dataclass(frozen=True)
class Endpoint:
    """A request/reply subject family: requests of ``union``, answers of ``reply_union``."""

    name: str
    union: Any
    reply_union: Any

    def subject(self, *tokens: str) -> str:
        return ".".join([PREFIX, self.name, *(_token(t, "subject token") for t in tokens)])


# Session assignment (services/common/assignment.py, services/edge/lease_keeper.py).
# va.assign.<service>, read through the queue group <service>: any replica answers.
ASSIGN = Endpoint("assign", m.AssignMsg, m.AssignReplyMsg)
# va.lease.<service>.<replica>: one replica's own subject (assign to it, renew, revoke).
LEASE = Endpoint("lease", m.ReplicaRequestMsg, m.ReplicaReplyMsg)
# Services whose per-session state lives on one replica: the edge assigns each
# session an owner among their replicas. Their per-session subjects are read
# per session by the owner only, never through a wildcard.
ASSIGNED_SERVICES = ("stt", "turns")


def _token(value: str | None, what: str) -> str:
    """``value`` as one subject token: not empty, no separator or wildcard."""
    if not value or "." in value or "*" in value or ">" in value or " " in value:
        raise ValueError(f"invalid {what} for a subject: {value!r}")
    return value


def session_of(subject: str) -> str:
    """The session id at the end of a per-session subject."""
    return subject.rsplit(".", 1)[-1]
