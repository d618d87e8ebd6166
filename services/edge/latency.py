"""Per-turn latency on the edge's clock: the figures (pure bookkeeping, times passed in)
and the turn's trace (TurnTraces).

Every figure is milliseconds from the end of the user's speech (the last voiced
moment, ``SpeechEnded.at``) to the first sign of each step reaching the edge: the
final transcript, the first LLM token, the first synthesized audio, the first
frame of the reply handed to WebRTC. A step not seen is reported as -1. A step
started speculatively at the first silent frame comes out shorter than the
endpointing silence (the reply was ready before the end of the turn was confirmed);
the turn is the confirmed generation, so the reference is the end of all the speech.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from proto import messages as m
from services.common import telemetry

NOT_SEEN = -1.0


@dataclass(frozen=True)
class Latency:
    turn_id: int
    stt_final_ms: float
    llm_first_token_ms: float
    tts_first_audio_ms: float
    first_audio_out_ms: float


@dataclass
class _Marks:
    speech_end: float | None = None
    stt_final: float | None = None
    llm_first_token: float | None = None
    tts_first_audio: float | None = None
    reported: bool = False


class LatencyTracker:
    """First-seen times per turn; a report once the reply's first audio goes out."""

    def __init__(self, keep_turns: int = 16) -> None:
        self._turns: OrderedDict[int, _Marks] = OrderedDict()
        self._keep = keep_turns

    def _marks(self, turn_id: int) -> _Marks:
        marks = self._turns.get(turn_id)
        if marks is None:
            marks = self._turns[turn_id] = _Marks()
            while len(self._turns) > self._keep:
                self._turns.popitem(last=False)
        return marks

    def speech_ended(self, turn_id: int, at: float) -> None:
        self._marks(turn_id).speech_end = at

    def stt_final(self, turn_id: int, now: float) -> None:
        marks = self._marks(turn_id)
        marks.stt_final = marks.stt_final if marks.stt_final is not None else now

    def llm_token(self, turn_id: int, now: float) -> None:
        marks = self._marks(turn_id)
        marks.llm_first_token = marks.llm_first_token if marks.llm_first_token is not None else now

    def tts_audio(self, turn_id: int, now: float) -> None:
        marks = self._marks(turn_id)
        marks.tts_first_audio = marks.tts_first_audio if marks.tts_first_audio is not None else now

    def audio_out(self, turn_id: int, now: float) -> Latency | None:
        """The turn's figures when its first audio leaves; None for a turn
        without a user utterance (the greeting) or one already reported."""
        marks = self._turns.get(turn_id)
        if marks is None or marks.speech_end is None or marks.reported:
            return None
        marks.reported = True
        end = marks.speech_end

        def ms(t: float | None) -> float:
            return NOT_SEEN if t is None else round((t - end) * 1000, 1)

        return Latency(
            turn_id, ms(marks.stt_final), ms(marks.llm_first_token), ms(marks.tts_first_audio), ms(now)
        )


USER_TURN_SPAN = "user turn"
PLAYOUT_SPAN = "playout"

_V = TypeVar("_V")


class TurnTraces:
    """The edge's spans of one session's turns, driven by the messages the edge publishes.

    A user turn (generation N) is one trace. Its root span, "user turn", starts at the
    first voiced moment (``SpeechStarted.at``) and ends once ``SpeechEnded`` is published
    (or when the user goes on and generation N+1 continues it: a new root, linked to N).
    Everything the edge publishes about N runs in the root's context: the VAD messages get
    spans, the AudioFrames carry it in their headers only. stt, turns, llm and tts pass it
    on through the bus, so the reply comes back in the same trace; the "playout" span of
    reply N hangs under the delivery of its first AudioChunk and lasts until
    ``PlayoutFinished``. Children may outlive the root (the reply plays after the turn).
    """

    def __init__(self, session_id: str, keep_turns: int = 16) -> None:
        self._session_id = session_id
        self._keep = keep_turns
        self._roots: OrderedDict[int, trace.Span] = OrderedDict()  # open user turns
        self._first_audio: OrderedDict[int, Context] = (
            OrderedDict()
        )  # reply -> its first AudioChunk's context
        self._playouts: OrderedDict[int, trace.Span] = OrderedDict()  # replies playing

    @contextmanager
    def publishing(self, message: object) -> Iterator[None]:
        """Publish ``message`` inside the span of the turn it is about, opening or
        closing that turn's spans as the message says (SpeechStarted opens the root,
        SpeechEnded closes it; PlayoutStarted and PlayoutFinished bracket the playout)."""
        self._open_for(message)
        span = self._span_for(message)
        token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        try:
            yield
        finally:
            if token is not None:
                otel_context.detach(token)
            self._close_for(message)

    def reply_audio(self, turn_id: int) -> None:
        """An AudioChunk of reply ``turn_id`` arrived; call it in the handler, whose
        context is the delivery's span (for the first piece of a chunk) or the sender's.
        The first one's context becomes the playout span's parent."""
        if turn_id not in self._first_audio and turn_id not in self._playouts:
            _remember(self._first_audio, turn_id, otel_context.get_current(), self._keep)

    def close(self) -> None:
        """The session is over: end whatever is still open, so it is exported."""
        for spans in (self._roots, self._playouts):
            for span in spans.values():
                span.set_attribute("voice_agent.outcome", "session closed")
                span.end()
            spans.clear()
        self._first_audio.clear()

    # --- spans per message ---------------------------------------------------

    def _span_for(self, message: object) -> trace.Span | None:
        turn_id = getattr(message, "turn_id", -1)
        if isinstance(message, m.AudioFrame | m.SpeechStarted | m.SpeechPaused | m.SpeechEnded):
            return self._roots.get(turn_id)
        if isinstance(message, m.PlayoutStarted | m.PlayoutFinished | m.TurnLatency):
            return self._playouts.get(turn_id)
        if isinstance(message, m.Cancel):
            # A barge-in belongs to the reply it cuts; "speech resumed" to the utterance it voids.
            return self._playouts.get(turn_id) or self._roots.get(turn_id)
        return None

    def _open_for(self, message: object) -> None:
        if isinstance(message, m.SpeechStarted):
            self._start_turn(message)
        elif isinstance(message, m.PlayoutStarted):
            self._start_playout(message)

    def _close_for(self, message: object) -> None:
        if isinstance(message, m.SpeechEnded):
            self._end_turn(message)
        elif isinstance(message, m.PlayoutFinished):
            self._end_playout(message)

    def _start_turn(self, started: m.SpeechStarted) -> None:
        links = []
        previous = self._roots.pop(started.continues, None) if started.continues else None
        if previous is not None:
            previous.set_attribute("voice_agent.outcome", "continued")
            previous.set_attribute("voice_agent.continued_by", started.turn_id)
            previous.end()
            links.append(trace.Link(previous.get_span_context()))
        root = telemetry.tracer().start_span(
            USER_TURN_SPAN,
            context=Context(),  # a new trace, whatever the microphone task's context is
            kind=trace.SpanKind.INTERNAL,
            links=links,
            start_time=_ns(started.at),
            attributes={
                "voice_agent.session_id": self._session_id,
                "voice_agent.turn_id": started.turn_id,
                "voice_agent.continues": started.continues,
            },
        )
        _end_evicted(_remember(self._roots, started.turn_id, root, self._keep))

    def _end_turn(self, ended: m.SpeechEnded) -> None:
        root = self._roots.pop(ended.turn_id, None)
        if root is None:
            return
        root.set_attributes(
            {
                "voice_agent.outcome": "ended",
                "voice_agent.speech_ended_at": ended.at,
                "voice_agent.end_of_turn_ms": round((ended.decided_at - ended.at) * 1000, 1),
                "voice_agent.frame_count": ended.frame_count,
            }
        )
        root.end()

    def _start_playout(self, started: m.PlayoutStarted) -> None:
        parent = self._first_audio.pop(started.turn_id, None)
        if parent is None and started.turn_id in self._roots:
            parent = trace.set_span_in_context(self._roots[started.turn_id])
        span = telemetry.tracer().start_span(
            PLAYOUT_SPAN,
            context=parent or Context(),
            kind=trace.SpanKind.INTERNAL,
            start_time=_ns(started.at),
            attributes={"voice_agent.session_id": self._session_id, "voice_agent.turn_id": started.turn_id},
        )
        _end_evicted(_remember(self._playouts, started.turn_id, span, self._keep))

    def _end_playout(self, finished: m.PlayoutFinished) -> None:
        span = self._playouts.pop(finished.turn_id, None)
        if span is None:
            return
        span.set_attributes(
            {
                "voice_agent.interrupted": finished.interrupted,
                **telemetry.text_attributes("voice_agent.heard_text", finished.heard_text),
            }
        )
        span.end()


def _ns(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1e9)


def _remember(items: OrderedDict[int, _V], turn_id: int, value: _V, keep: int) -> list[_V]:
    """Store ``value`` for ``turn_id``; returns what fell out (the oldest beyond ``keep``)."""
    items[turn_id] = value
    evicted = []
    while len(items) > keep:
        evicted.append(items.popitem(last=False)[1])
    return evicted


def _end_evicted(spans: list[trace.Span]) -> None:
    # Only a session with more than keep_turns open turns gets here: end them so they export.
    for span in spans:
        span.set_attribute("voice_agent.outcome", "evicted")
        span.end()
