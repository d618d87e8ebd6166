"""Every message that travels on the bus.

Each message is a msgspec Struct tagged with its class name, so a subject that
carries several kinds of message decodes them with one Decoder of the union.
Every message carries ``session_id``, ``turn_id`` and ``seq``:

- ``session_id``: the WebRTC session at the edge (hex token, safe in subjects).
- ``turn_id``: the generation id. The edge numbers user utterances 1, 2, ...;
  the agent's reply to utterance N carries turn id N; the greeting is turn 0.
  An utterance resumed after a speculative pause goes on under a new number
  (SpeechStarted.continues), so the speculative work is void by the usual rule:
  a consumer drops any message whose turn id is older than the newest it knows.
- ``seq``: a per-publisher, per-session counter, so gaps and reordering show.

Audio is raw PCM16 little-endian mono ``bytes``: msgpack carries it as a binary
blob, never base64. Times (``*_at``) are ``time.time()`` seconds at the sender.
See proto/SCHEMA.md for how to evolve these types.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class _Msg(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    session_id: str
    turn_id: int
    seq: int


# --- session lifecycle (edge -> everyone) -----------------------------------


class SessionStarted(_Msg, frozen=True):
    started_at: float


class SessionEnded(_Msg, frozen=True):
    reason: str = "closed"


# --- microphone audio (edge -> stt) ----------------------------------------


class AudioFrame(_Msg, frozen=True):
    """20 ms of the user's microphone at ``sample_rate``."""

    pcm: bytes
    sample_rate: int = 16000
    captured_at: float = 0.0


# --- voice activity (edge -> stt, turns) ------------------------------------


class SpeechStarted(_Msg, frozen=True):
    """The user started utterance ``turn_id``; ``at`` is when speech began.

    ``continues`` > 0: the user resumed speaking after a pause in generation
    ``continues`` (see SpeechPaused): the same utterance goes on as generation
    ``turn_id``, its transcript covers the audio of both, and whatever was
    started speculatively for ``continues`` is void (the edge has sent Cancel).
    """

    at: float
    continues: int = 0


class SpeechPaused(_Msg, frozen=True):
    """The first silent moment after speech in generation ``turn_id``: the end
    of the turn is not decided yet, but its work may start speculatively. ``at``
    is the last voiced moment; ``frame_count`` the AudioFrames sent so far for
    this generation. Followed by SpeechEnded (confirmed) or by SpeechStarted
    with ``continues`` = ``turn_id`` (discarded)."""

    at: float
    decided_at: float
    frame_count: int = 0


class SpeechEnded(_Msg, frozen=True):
    """Utterance ``turn_id`` ended: ``at`` is the last voiced moment; the edge
    sends this once the endpointing silence has passed (``decided_at``)."""

    at: float
    decided_at: float
    frame_count: int = 0  # AudioFrames sent for this utterance: stt waits for all of them


# --- transcripts (stt -> turns, edge) ---------------------------------------


class TranscriptPartial(_Msg, frozen=True):
    text: str
    heard_until: float = 0.0  # edge capture time of the end of the audio it heard; 0 = unknown


class TranscriptFinal(_Msg, frozen=True):
    """The transcript of generation ``turn_id``. ``speculative``: decoded at
    SpeechPaused, before the end of the turn was confirmed; the confirmed final
    of the same generation follows with the same text unless speech resumed."""

    text: str
    speech_ended_at: float = 0.0
    speculative: bool = False
    heard_until: float = 0.0


# --- language model (turns -> llm -> tts, turns, edge) ----------------------


class ChatMessage(msgspec.Struct, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str
    interrupted: bool = False


class LlmRequest(_Msg, frozen=True):
    messages: list[ChatMessage]
    max_tokens: int = 150
    # Sent on a speculative final: the user may still go on (then Cancel follows).
    speculative: bool = False


class LlmPrime(_Msg, frozen=True):
    """The prompt of the request that will follow, as far as it is known while the
    user still speaks (the history and a partial transcript). The llm may evaluate
    it ahead into its prompt cache, so that request only pays for what changed.
    A hint: nothing is published back, and dropping it loses nothing.

    ``ahead`` (sent once the user has paused): the llm may also generate the reply
    ahead, unpublished; a request with the same prompt then takes over that
    generation instead of starting its own."""

    messages: list[ChatMessage]
    max_tokens: int = 150
    ahead: bool = False


class LlmToken(_Msg, frozen=True):
    text: str
    index: int


class LlmDone(_Msg, frozen=True):
    text: str
    tokens: int
    first_token_at: float
    cancelled: bool = False
    error: str = ""


# --- speech synthesis (llm/turns -> tts -> edge) ----------------------------


class TextChunk(_Msg, frozen=True):
    """One chunk of the agent's reply to speak; ``index`` orders the chunks of
    a turn and ``last`` closes the turn's speech."""

    text: str
    index: int
    last: bool = False
    allow_interruptions: bool = True


class AudioChunk(_Msg, frozen=True):
    """At most ``max_chunk_ms`` of synthesized speech for text chunk
    ``chunk_index``; ``part`` orders the pieces of one text chunk. The piece
    with ``final_part`` set ends that text chunk; ``text`` rides on part 0."""

    chunk_index: int
    part: int
    pcm: bytes
    sample_rate: int
    text: str = ""
    final_part: bool = False
    last_chunk: bool = False
    allow_interruptions: bool = True


# --- control (anyone -> llm, tts, edge) -------------------------------------


class Cancel(_Msg, frozen=True):
    """Stop all work for ``turn_id`` of the session (and anything older)."""

    reason: str = "barge-in"


# --- playout (edge -> turns) ------------------------------------------------


class PlayoutStarted(_Msg, frozen=True):
    at: float


class PlayoutFinished(_Msg, frozen=True):
    """What the user actually heard of turn ``turn_id``."""

    heard_text: str
    interrupted: bool
    at: float


# --- agent state and per-turn figures (turns/edge -> edge/browser) ----------


class AgentState(_Msg, frozen=True):
    state: Literal["listening", "thinking", "speaking"]


class TurnLatency(_Msg, frozen=True):
    """Milliseconds from end of user speech to each step, measured at the edge."""

    stt_final_ms: float
    llm_first_token_ms: float
    tts_first_audio_ms: float
    first_audio_out_ms: float


# --- session assignment (edge <-> stt, turns replicas) ----------------------
# A session's recognizer and conversation live on one replica of each service:
# the edge asks for an owner at session start and renews a lease on it.


class Handover(msgspec.Struct, frozen=True):
    """A session's state passed from a draining owner to the next one."""

    history: list[ChatMessage] = msgspec.field(default_factory=list)  # turns: oldest first


class AssignRequest(_Msg, frozen=True):
    """Take ``session_id`` on: sent by the edge to the service's queue group, or to
    one replica it picked; ``handover`` is what the previous owner gave back."""

    handover: Handover | None = None


class AssignReply(_Msg, frozen=True):
    replica: str
    accepted: bool = True  # False: the replica is draining and takes nothing new


class LeaseRenew(_Msg, frozen=True):
    """The edge keeps ``session_id`` on this replica for another lease period."""


class LeaseRevoke(_Msg, frozen=True):
    """Forget ``session_id``: it ended, or the edge gave it to another replica."""


class LeaseReply(_Msg, frozen=True):
    """``released``: the replica is draining and gave the session back with
    ``handover``; ``unknown``: it does not own the session (any more)."""

    status: Literal["held", "released", "unknown"]
    handover: Handover | None = None


class ReplicaStatus(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    """A replica's heartbeat (about a replica, not a session: no session fields).
    Edges assign new sessions to the least loaded replica they have heard from."""

    service: str
    replica: str
    sessions: int
    draining: bool = False
    sent_at: float = 0.0


SessionMsg = SessionStarted | SessionEnded
AudioInMsg = AudioFrame
VadMsg = SpeechStarted | SpeechPaused | SpeechEnded
TranscriptMsg = TranscriptPartial | TranscriptFinal
LlmRequestMsg = LlmRequest | LlmPrime
LlmStreamMsg = LlmToken | LlmDone
TtsRequestMsg = TextChunk
AudioOutMsg = AudioChunk
ControlMsg = Cancel
PlayoutMsg = PlayoutStarted | PlayoutFinished
StateMsg = AgentState | TurnLatency
AssignMsg = AssignRequest
AssignReplyMsg = AssignReply
ReplicaRequestMsg = AssignRequest | LeaseRenew | LeaseRevoke
ReplicaReplyMsg = AssignReply | LeaseReply
ReplicaStatusMsg = ReplicaStatus
