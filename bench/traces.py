"""The server side of a turn from the services' spans (``traces.jsonl``): when each step
happened and how long its messages spent on the bus. Pure functions but ``load_spans``.

Each line of the file is one span: ``{name, service, trace_id, span_id, parent_id, kind,
start_ns, end_ns, attributes}``. The bus makes a PRODUCER span "<channel> publish" per
traced message and a CONSUMER span "<channel> process" per delivery, the child of the
producer through the trace context in the NATS headers; both carry the message class
(``voice_agent.message``), the session and the turn. The time a hop spent on the bus is
consumer start - producer start.

A user turn is one trace: the edge's root span "user turn" (SpeechStarted.at to the
SpeechEnded publish; its attribute ``voice_agent.speech_ended_at`` is SpeechEnded.at) is the
ancestor of everything the turn caused in stt, turns, llm, tts and back at the edge (the
"playout" span). Messages that come in runs get spans only for the first of the run: no
AudioFrame span, the first LlmToken of a reply, the first AudioChunk piece of each text chunk.

The critical path of a turn is SpeechEnded (edge -> stt; SpeechPaused when the final was
made speculatively before the end of the turn was decided), TranscriptFinal (stt -> turns),
LlmRequest (turns -> llm), the first TextChunk (llm -> tts) and the first AudioChunk
(tts -> edge). Traces recorded before the edge spanned AudioChunks have that hop derived
from the edge's own `latency` figures instead.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Span:
    name: str
    service: str  # "edge", "stt", ... (the resource's service.name without "voice-agent-")
    kind: str  # PRODUCER | CONSUMER | INTERNAL
    trace_id: str
    span_id: str
    parent_id: str
    start_ms: float  # epoch milliseconds
    end_ms: float
    message: str  # message class name, "" for spans that are not about one message
    session_id: str
    turn_id: int | None
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_span(record: dict[str, Any]) -> Span:
    attributes = record.get("attributes") or {}
    turn = attributes.get("voice_agent.turn_id")
    service = str(record.get("service", ""))
    return Span(
        name=str(record.get("name", "")),
        service=service.removeprefix("voice-agent-"),
        kind=str(record.get("kind", "")),
        trace_id=str(record.get("trace_id", "")),
        span_id=str(record.get("span_id", "")),
        parent_id=str(record.get("parent_id", "")),
        start_ms=int(record.get("start_ns") or 0) / 1e6,
        end_ms=int(record.get("end_ns") or 0) / 1e6,
        message=str(attributes.get("voice_agent.message", "")),
        session_id=str(attributes.get("voice_agent.session_id", "")),
        turn_id=int(turn) if isinstance(turn, int) and turn >= 0 else None,
        attributes=dict(attributes),
    )


def load_spans(path: Path) -> list[Span]:
    """Every span in the file; a line cut short (a process killed mid-write) is skipped."""
    spans: list[Span] = []
    if not path.exists():
        return spans
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            spans.append(parse_span(json.loads(line)))
        except (ValueError, TypeError):
            continue
    return spans


@dataclass(frozen=True)
class Hop:
    """One message's time on the bus."""

    message: str
    producer: str  # service
    consumer: str  # service
    ms: float
    how: str  # "spans" (consumer start - producer start) or "derived" (see `notes`)


# The server-side milestones of a turn, in order; each step of the breakdown ends at one.
MILESTONES = (
    "edge_speech_end",  # the last voiced moment as the edge's VAD saw it (SpeechEnded.at)
    "speech_ended_published",  # the edge decided the turn ended (SpeechEnded published)
    "stt_final_published",  # stt published the TranscriptFinal
    "llm_first_token",  # the first LlmToken reached the edge
    "llm_first_chunk",  # llm published the first speakable TextChunk
    "tts_first_audio",  # tts published the first AudioChunk
    "edge_first_audio_out",  # the edge handed the reply's first frame to WebRTC
)


@dataclass
class ServerTurn:
    turn_id: int
    milestones: dict[str, float | None]  # epoch ms
    hops: list[Hop]
    notes: list[str] = field(default_factory=list)  # what was derived, what was missing

    @property
    def bus_ms(self) -> float | None:
        return round(sum(h.ms for h in self.hops), 3) if self.hops else None


class SpanIndex:
    def __init__(self, spans: Iterable[Span]) -> None:
        self.spans = sorted(spans, key=lambda s: s.start_ms)
        self.by_id = {s.span_id: s for s in self.spans}

    def find(
        self,
        session_id: str,
        turn_id: int,
        message: str,
        kind: str,
        service: str | None = None,
    ) -> list[Span]:
        """Spans about ``message`` of the turn, earliest first."""
        return [
            s
            for s in self.spans
            if s.message == message
            and s.kind == kind
            and s.turn_id == turn_id
            and s.session_id == session_id
            and (service is None or s.service == service)
        ]

    def first(
        self, session_id: str, turn_id: int, message: str, kind: str, service: str | None = None
    ) -> Span | None:
        found = self.find(session_id, turn_id, message, kind, service)
        return found[0] if found else None

    def ancestors(self, span: Span) -> list[Span]:
        """The span's parents, nearest first, as far as they were recorded."""
        chain: list[Span] = []
        seen = {span.span_id}
        current = self.by_id.get(span.parent_id)
        while current is not None and current.span_id not in seen:
            chain.append(current)
            seen.add(current.span_id)
            current = self.by_id.get(current.parent_id)
        return chain

    def consumer_of(self, producer: Span, service: str) -> Span | None:
        """The earliest delivery of ``producer``'s message to ``service``."""
        return next(
            (
                s
                for s in self.spans
                if s.parent_id == producer.span_id and s.kind == "CONSUMER" and s.service == service
            ),
            None,
        )


USER_TURN_SPAN = "user turn"  # services/edge/latency.py


@dataclass(frozen=True)
class TurnTrace:
    """The spans of one user turn's trace, rooted at the edge."""

    root: Span
    spans: list[Span]

    @property
    def services(self) -> set[str]:
        return {s.service for s in self.spans}

    def orphans(self) -> list[Span]:
        """Spans (but the root) whose parent is not in the trace: a broken link."""
        ids = {s.span_id for s in self.spans}
        return [s for s in self.spans if s is not self.root and s.parent_id not in ids]


def turn_trace(index: SpanIndex, session_id: str, turn_id: int) -> TurnTrace | None:
    """Turn ``turn_id``'s trace: its root span and every span that shares its trace id."""
    root = next(
        (
            s
            for s in index.spans
            if s.name == USER_TURN_SPAN and s.session_id == session_id and s.turn_id == turn_id
        ),
        None,
    )
    if root is None:
        return None
    return TurnTrace(root, [s for s in index.spans if s.trace_id == root.trace_id])


def _hop(producer: Span, consumer: Span) -> Hop:
    ms = round(consumer.start_ms - producer.start_ms, 3)
    return Hop(producer.message, producer.service, consumer.service, ms, "spans")


def critical_hops(index: SpanIndex, session_id: str, turn_id: int) -> tuple[list[Hop], list[str]]:
    """The traced bus hops on the path from the end of speech to the first audio.

    The path is followed through the trace context where it exists (the first TextChunk's
    ancestors lead back through llm and turns to the transcript that started it), so a
    request made from another message than the TranscriptFinal is still followed.
    The VAD message's hop to stt is added when the trace context does not reach it.
    """
    notes: list[str] = []
    upstream: list[Hop] = []
    chunk = index.first(session_id, turn_id, "TextChunk", "PRODUCER", "llm")
    if chunk is None:
        notes.append("no TextChunk from llm: the hops after the transcript are not counted")
    else:
        chain = [chunk, *index.ancestors(chunk)]
        for consumer, producer in itertools.pairwise(chain):
            if consumer.kind == "CONSUMER" and producer.kind == "PRODUCER":
                upstream.insert(0, _hop(producer, consumer))  # the chain runs backwards in time
        if not any(h.message == "LlmRequest" for h in upstream):
            notes.append("LlmRequest turns->llm: not linked to the first TextChunk by trace context")
    hops: list[Hop] = []
    vad = _vad_message(index, session_id, turn_id)
    if not any(h.message == vad for h in upstream):
        ended = index.first(session_id, turn_id, vad, "PRODUCER", "edge")
        ended_in_stt = index.consumer_of(ended, "stt") if ended else None
        if ended and ended_in_stt:
            hops.append(_hop(ended, ended_in_stt))
        else:
            notes.append(f"{vad} edge->stt: no span pair")
    hops += upstream
    if chunk is not None:
        chunk_in_tts = index.consumer_of(chunk, "tts")
        if chunk_in_tts:
            hops.append(_hop(chunk, chunk_in_tts))
        else:
            notes.append("TextChunk llm->tts: no consumer span")
    return hops, notes


def _vad_message(index: SpanIndex, session_id: str, turn_id: int) -> str:
    """The VAD message stt made the turn's final from: SpeechEnded, or SpeechPaused when
    the edge paused speculatively and the final was published before the end was decided."""
    paused = index.first(session_id, turn_id, "SpeechPaused", "PRODUCER", "edge")
    ended = index.first(session_id, turn_id, "SpeechEnded", "PRODUCER", "edge")
    final = index.first(session_id, turn_id, "TranscriptFinal", "PRODUCER", "stt")
    if paused and final and (ended is None or final.start_ms < ended.start_ms):
        return "SpeechPaused"
    return "SpeechEnded"


def _edge_speech_end(playout: float | None, latency: dict[str, Any] | None) -> float | None:
    """SpeechEnded.at is in no span: the edge published PlayoutStarted at the moment its
    latency event calls ``first_audio_out_ms`` after SpeechEnded.at."""
    out_ms = latency.get("first_audio_out_ms") if latency else None
    if playout is None or not isinstance(out_ms, int | float) or out_ms < 0:
        return None
    return playout - out_ms


def server_turn(
    index: SpanIndex, session_id: str, turn_id: int, latency: dict[str, Any] | None
) -> ServerTurn:
    """Milestones and bus hops of one turn; ``latency`` is the edge's `latency` event
    (ms after SpeechEnded.at on the edge's clock), used where no span marks a step."""
    hops, notes = critical_hops(index, session_id, turn_id)

    def at(message: str, kind: str, service: str) -> float | None:
        span = index.first(session_id, turn_id, message, kind, service)
        return span.start_ms if span else None

    playout = at("PlayoutStarted", "PRODUCER", "edge")
    speech_end = _root_speech_end(index, session_id, turn_id)
    if speech_end is None:
        speech_end = _edge_speech_end(playout, latency)
        if speech_end is not None:
            notes.append("edge_speech_end = PlayoutStarted publish - first_audio_out_ms (latency event)")

    def after_speech_end(key: str) -> float | None:
        value = latency.get(key) if latency else None
        if speech_end is None or not isinstance(value, int | float) or value < 0:
            return None
        return float(speech_end + value)

    milestones: dict[str, float | None] = {
        "edge_speech_end": speech_end,
        "speech_ended_published": at("SpeechEnded", "PRODUCER", "edge"),
        "stt_final_published": at("TranscriptFinal", "PRODUCER", "stt"),
        "llm_first_token": at("LlmToken", "CONSUMER", "edge"),
        "llm_first_chunk": at("TextChunk", "PRODUCER", "llm"),
        "tts_first_audio": at("AudioChunk", "PRODUCER", "tts"),
        "edge_first_audio_out": playout,
    }
    fallbacks = {
        "stt_final_published": "stt_final_ms",
        "llm_first_token": "llm_first_token_ms",
        "edge_first_audio_out": "first_audio_out_ms",
    }
    for name, key in fallbacks.items():
        if milestones[name] is None and (value := after_speech_end(key)) is not None:
            milestones[name] = value
            notes.append(f"{name} from the latency event's {key} (no span)")
    notes += [f"{name}: missing" for name, value in milestones.items() if value is None]

    audio = _audio_hop(index, session_id, turn_id, after_speech_end("tts_first_audio_ms"), notes)
    return ServerTurn(turn_id, milestones, [*hops, audio] if audio else hops, notes)


def _root_speech_end(index: SpanIndex, session_id: str, turn_id: int) -> float | None:
    """SpeechEnded.at in epoch ms, as the turn's root span records it."""
    found = turn_trace(index, session_id, turn_id)
    value = found.root.attributes.get("voice_agent.speech_ended_at") if found else None
    return float(value) * 1000 if isinstance(value, int | float) else None


def _audio_hop(
    index: SpanIndex, session_id: str, turn_id: int, received: float | None, notes: list[str]
) -> Hop | None:
    """The first AudioChunk's hop tts -> edge: from its spans, or (older traces, where the
    edge took audio without a span) from the latency event's tts_first_audio_ms."""
    sent = index.first(session_id, turn_id, "AudioChunk", "PRODUCER", "tts")
    delivered = index.consumer_of(sent, "edge") if sent else None
    if sent and delivered:
        return _hop(sent, delivered)
    if received is not None and sent is not None:
        return Hop("AudioChunk", "tts", "edge", round(received - sent.start_ms, 3), "derived")
    notes.append("AudioChunk tts->edge: not derivable")
    return None


def session_of(spans: Sequence[Span]) -> str | None:
    """The one session in the run (the page makes one call)."""
    sessions = {s.session_id for s in spans if s.message == "SessionStarted" and s.session_id}
    return next(iter(sessions)) if len(sessions) == 1 else None
