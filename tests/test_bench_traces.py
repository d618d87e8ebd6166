"""The benchmark's trace analysis on a small synthetic turn, shaped like the services' spans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.traces import SpanIndex, load_spans, parse_span, server_turn, session_of

SESSION = "abc123"
T0 = 1_700_000_000_000.0  # epoch ms of the last voiced moment at the edge (SpeechEnded.at)


def record(
    span_id: str,
    name: str,
    service: str,
    kind: str,
    start_ms: float,
    message: str = "",
    parent: str = "",
    turn: int = 3,
    trace: str = "t1",
) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if message:
        attributes = {
            "voice_agent.message": message,
            "voice_agent.session_id": SESSION,
            "voice_agent.turn_id": turn,
        }
    return {
        "name": name,
        "service": f"voice-agent-{service}",
        "trace_id": trace,
        "span_id": span_id,
        "parent_id": parent,
        "kind": kind,
        "start_ns": int((T0 + start_ms) * 1e6),
        "end_ns": int((T0 + start_ms + 0.5) * 1e6),
        "attributes": attributes,
    }


def turn_spans() -> list[dict[str, Any]]:
    """Turn 3: milestones at known offsets (ms after T0), hops of known length."""
    return [
        record("s0", "session publish", "edge", "PRODUCER", -9000, "SessionStarted", turn=0, trace="t0"),
        record("v1", "vad publish", "edge", "PRODUCER", 400.0, "SpeechEnded", trace="tv"),
        record("v2", "vad process", "turns", "CONSUMER", 400.2, "SpeechEnded", parent="v1", trace="tv"),
        record("v3", "vad process", "stt", "CONSUMER", 400.5, "SpeechEnded", parent="v1", trace="tv"),
        # stt's worker publishes without a parent: a new trace starts at the final
        record("f1", "transcript publish", "stt", "PRODUCER", 450.0, "TranscriptFinal"),
        record("f2", "transcript process", "turns", "CONSUMER", 450.3, "TranscriptFinal", parent="f1"),
        record("f3", "transcript process", "edge", "CONSUMER", 450.9, "TranscriptFinal", parent="f1"),
        record("r1", "llm.request publish", "turns", "PRODUCER", 451.0, "LlmRequest", parent="f2"),
        record("r2", "llm.request process", "llm", "CONSUMER", 451.4, "LlmRequest", parent="r1"),
        record("g1", "llm generate", "llm", "INTERNAL", 452.0, parent="r2"),
        record("k1", "llm.stream process", "edge", "CONSUMER", 560.0, "LlmToken", parent="g1"),
        record("k2", "llm.stream process", "edge", "CONSUMER", 590.0, "LlmToken", parent="g1"),
        record("c1", "tts.request publish", "llm", "PRODUCER", 640.0, "TextChunk", parent="g1"),
        record("c2", "tts.request process", "tts", "CONSUMER", 640.6, "TextChunk", parent="c1"),
        record("c3", "tts.request publish", "llm", "PRODUCER", 700.0, "TextChunk", parent="g1"),
        # tts publishes its audio from a session task: the parent is another turn's span
        record("a1", "audio.out publish", "tts", "PRODUCER", 760.0, "AudioChunk", parent="old", trace="t9"),
        record("a2", "audio.out publish", "tts", "PRODUCER", 800.0, "AudioChunk", parent="old", trace="t9"),
        record("p1", "playout publish", "edge", "PRODUCER", 780.0, "PlayoutStarted", trace="tp"),
        # another turn of the same session must not leak into turn 3
        record("x1", "vad publish", "edge", "PRODUCER", 100.0, "SpeechEnded", turn=2, trace="tx"),
    ]


LATENCY = {
    "turn_id": 3,
    "stt_final_ms": 451.0,
    "llm_first_token_ms": 560.1,
    "tts_first_audio_ms": 761.5,
    "first_audio_out_ms": 780.0,
}


def index() -> SpanIndex:
    return SpanIndex(parse_span(r) for r in turn_spans())


def test_milestones_come_from_the_right_spans() -> None:
    turn = server_turn(index(), SESSION, 3, LATENCY)
    after = {k: None if v is None else round(v - T0, 1) for k, v in turn.milestones.items()}
    assert after == {
        "edge_speech_end": 0.0,  # PlayoutStarted publish - first_audio_out_ms
        "speech_ended_published": 400.0,
        "stt_final_published": 450.0,
        "llm_first_token": 560.0,  # the first LlmToken at the edge, not the second
        "llm_first_chunk": 640.0,  # the first TextChunk, not the second
        "tts_first_audio": 760.0,
        "edge_first_audio_out": 780.0,
    }


def test_bus_hops_follow_the_critical_path() -> None:
    turn = server_turn(index(), SESSION, 3, LATENCY)
    hops = [(h.message, h.producer, h.consumer, round(h.ms, 2), h.how) for h in turn.hops]
    assert hops == [
        ("SpeechEnded", "edge", "stt", 0.5, "spans"),  # the stt delivery, not turns'
        ("TranscriptFinal", "stt", "turns", 0.3, "spans"),  # turns, the one that asks the LLM
        ("LlmRequest", "turns", "llm", 0.4, "spans"),
        ("TextChunk", "llm", "tts", 0.6, "spans"),
        ("AudioChunk", "tts", "edge", 1.5, "derived"),  # latency event: edge got it at 761.5
    ]
    assert turn.bus_ms == pytest.approx(3.3, abs=0.01)


def test_without_the_latency_event_the_edge_side_is_missing_and_said_so() -> None:
    turn = server_turn(index(), SESSION, 3, None)
    assert turn.milestones["edge_speech_end"] is None
    assert turn.milestones["edge_first_audio_out"] is not None  # the PlayoutStarted span
    assert [h.message for h in turn.hops] == ["SpeechEnded", "TranscriptFinal", "LlmRequest", "TextChunk"]
    assert "edge_speech_end: missing" in turn.notes
    assert "AudioChunk tts->edge: not derivable" in turn.notes


def test_latency_event_fills_a_step_without_a_span() -> None:
    spans = [r for r in turn_spans() if r["attributes"].get("voice_agent.message") != "LlmToken"]
    turn = server_turn(SpanIndex(parse_span(r) for r in spans), SESSION, 3, LATENCY)
    first_token = turn.milestones["llm_first_token"]
    assert first_token is not None and first_token - T0 == pytest.approx(560.1, abs=0.01)
    assert any("llm_first_token from the latency event" in n for n in turn.notes)


def test_a_broken_trace_context_is_reported_not_guessed() -> None:
    spans = [r for r in turn_spans() if r["span_id"] != "r1"]  # the LlmRequest publish span is lost
    turn = server_turn(SpanIndex(parse_span(r) for r in spans), SESSION, 3, LATENCY)
    assert "LlmRequest" not in [h.message for h in turn.hops]
    assert any("LlmRequest turns->llm" in n for n in turn.notes)


def test_load_spans_skips_a_torn_line_and_finds_the_session(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    lines = [json.dumps(r) for r in turn_spans()]
    path.write_text("\n".join(lines) + '\n{"name": "vad pub')
    spans = load_spans(path)
    assert len(spans) == len(lines)
    assert spans[1].service == "edge" and spans[1].turn_id == 3
    assert session_of(spans) == SESSION
    assert load_spans(tmp_path / "missing.jsonl") == []


def test_a_speculative_final_counts_the_pause_not_the_end() -> None:
    """The edge paused (SpeechPaused) and stt's final came before SpeechEnded: the hop on
    the critical path is SpeechPaused's, and the STT step comes out negative."""
    spans = [
        *turn_spans(),
        record("q1", "vad publish", "edge", "PRODUCER", 150.0, "SpeechPaused", trace="tq"),
        record("q2", "vad process", "stt", "CONSUMER", 150.7, "SpeechPaused", parent="q1", trace="tq"),
    ]
    for span in spans:
        if span["span_id"] in ("f1", "f2", "f3"):
            span["start_ns"] -= int(300 * 1e6)  # the final at 150 ms, before SpeechEnded at 400 ms
    turn = server_turn(SpanIndex(parse_span(r) for r in spans), SESSION, 3, LATENCY)
    hops = [(h.message, round(h.ms, 2)) for h in turn.hops]
    assert hops[:2] == [("SpeechPaused", 0.7), ("TranscriptFinal", 0.3)]
    assert "SpeechEnded" not in [message for message, _ in hops]
    final, ended = turn.milestones["stt_final_published"], turn.milestones["speech_ended_published"]
    assert final is not None and ended is not None and final - ended == pytest.approx(-250.0, abs=0.01)
