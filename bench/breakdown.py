"""Per-turn breakdown: the page's measurement joined with the server's milestones,
cut into consecutive steps that add up to the voice-to-voice latency. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.page_audio import PageTurn
from bench.traces import Hop, ServerTurn

# (step, the milestone that ends it, what it covers). A step starts where the previous
# milestone that was measured ends; the first starts at the end of speech at the microphone.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("mic_to_edge", "edge_speech_end", "microphone to edge: capture, Opus, network, jitter buffer, VAD"),
    ("end_of_turn", "speech_ended_published", "end-of-turn delay: the endpointing silence"),
    ("stt_final", "stt_final_published", "STT final: SpeechEnded published to TranscriptFinal published"),
    ("llm_first_token", "llm_first_token", "LLM first token: TranscriptFinal to the first token at the edge"),
    ("llm_first_chunk", "llm_first_chunk", "LLM first speakable chunk: first token to first TextChunk"),
    ("tts_first_audio", "tts_first_audio", "TTS first audio: first TextChunk to first AudioChunk published"),
    ("edge_playout", "edge_first_audio_out", "edge playout: first AudioChunk to its first frame out"),
    ("edge_to_browser", "browser_first_audio", "edge to browser: WebRTC, jitter buffer, to audible"),
)
START = "mic_speech_end"


@dataclass
class TurnResult:
    utterance: str
    turn_id: int | None
    split_turns: list[int]
    voice_to_voice_ms: float | None
    milestones: dict[str, float | None]  # epoch ms
    steps: dict[str, float | None]  # ms
    hops: list[Hop] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bus_ms(self) -> float | None:
        return round(sum(h.ms for h in self.hops), 3) if self.hops else None


def steps_of(milestones: dict[str, float | None]) -> dict[str, float | None]:
    """Each step's length: its milestone minus the latest earlier milestone measured.

    A missing milestone gives its step None and its time goes to the next step, so
    the steps that exist still add up to the last milestone minus the start. A step
    that ran ahead of the previous one (speculative work) comes out negative.
    """
    steps: dict[str, float | None] = {}
    previous = milestones.get(START)
    for step, milestone, _ in STEPS:
        value = milestones.get(milestone)
        if value is None or previous is None:
            steps[step] = None
        else:
            steps[step] = round(value - previous, 1)
        if value is not None:
            previous = value
    return steps


def join(page: PageTurn, server: ServerTurn | None) -> TurnResult:
    milestones: dict[str, float | None] = {START: page.mic_speech_end}
    for _, milestone, _ in STEPS:
        milestones[milestone] = None
    if server is not None:
        milestones.update(server.milestones)
    milestones["browser_first_audio"] = page.reply_start
    notes = list(server.notes) if server else ["no server-side data for this turn"]
    if len(page.split_turns) > 1:
        notes.append(f"the edge split this utterance into turns {page.split_turns}; measured the last")
    if page.turn_id is None:
        notes.append("the edge made no turn of this utterance")
    elif page.reply_start is None:
        notes.append("no reply audio reached the page for this turn")
    return TurnResult(
        utterance=page.utterance,
        turn_id=page.turn_id,
        split_turns=page.split_turns,
        voice_to_voice_ms=page.voice_to_voice_ms,
        milestones=milestones,
        steps=steps_of(milestones),
        hops=list(server.hops) if server else [],
        notes=notes,
    )


def hops_counted(turns: Sequence[TurnResult]) -> list[str]:
    """The distinct hops that went into the bus totals, e.g. "SpeechEnded edge->stt (spans)"."""
    seen: dict[str, None] = {}
    for turn in turns:
        for hop in turn.hops:
            seen[f"{hop.message} {hop.producer}->{hop.consumer} ({hop.how})"] = None
    return list(seen)
