"""Where each decode of stt sits in its user turn's trace.

The handlers only record; the worker decodes later, outside any handler, so without
help its spans and its transcripts would start new traces. DecodeTraces remembers,
per generation, the trace context each kind of decode belongs to:

- partial: the turn itself, as the AudioFrames carry it (in their headers, no span each);
- speculative final: the delivery of the generation's SpeechPaused;
- final: the delivery of its SpeechEnded.

The decode span ("stt decode", one per recognizer call) and the transcript published
after it run in that context, so turns, llm, tts and the edge follow in the same trace.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from proto.messages import AudioFrame, SpeechEnded, SpeechPaused, SpeechStarted
from services.stt.planner import Job

# Generations remembered per session: the open one and a few older ones still
# being finalized. Anything older than that is long transcribed.
KEEP_TURNS = 8


@dataclass
class _TurnContexts:
    audio: Context | None = None
    paused: Context | None = None
    ended: Context | None = None


class DecodeTraces:
    def __init__(self, keep_turns: int = KEEP_TURNS) -> None:
        self._keep = keep_turns
        self._sessions: dict[str, OrderedDict[int, _TurnContexts]] = {}

    def note(self, message: object) -> None:
        """Remember the current context (the handler's) for ``message``'s generation."""
        turns = self._turns(message)
        if turns is None:
            return
        current = otel_context.get_current()
        if isinstance(message, AudioFrame | SpeechStarted):
            # The first one will do: every frame of a generation carries the same root.
            turns.audio = turns.audio or current
        elif isinstance(message, SpeechPaused):
            turns.paused = current
        elif isinstance(message, SpeechEnded):
            turns.ended = current

    def context_for(self, job: Job) -> Context:
        """The context to decode ``job`` in; an empty one (a new trace) if unknown."""
        turns = self._sessions.get(job.session_id, OrderedDict()).get(job.turn_id)
        if turns is None:
            return Context()
        preferred = {"final": turns.ended, "speculative": turns.paused}.get(job.kind)
        return preferred or turns.audio or Context()

    def finished(self, job: Job) -> None:
        """A final is the generation's last decode: forget it."""
        if job.kind == "final":
            self._sessions.get(job.session_id, OrderedDict()).pop(job.turn_id, None)

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _turns(self, message: object) -> _TurnContexts | None:
        session_id = getattr(message, "session_id", None)
        turn_id = getattr(message, "turn_id", None)
        if not isinstance(session_id, str) or not isinstance(turn_id, int):
            return None
        turns = self._sessions.setdefault(session_id, OrderedDict())
        if turn_id not in turns:
            turns[turn_id] = _TurnContexts()
            while len(turns) > self._keep:
                turns.popitem(last=False)
        return turns[turn_id]
