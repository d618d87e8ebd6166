"""bench/traces.py on traces shaped like the services' spans now are: a turn's root span at
the edge, the first AudioChunk delivered with a span. Synthetic spans of tests/test_bench_traces.py."""

from __future__ import annotations

from typing import Any

from bench.traces import SpanIndex, parse_span, server_turn, turn_trace
from tests.test_bench_traces import LATENCY, SESSION, T0, record, turn_spans


def connected_turn() -> list[dict[str, Any]]:
    """Turn 3 as one trace: the root, a VAD hop, the reply, the audio back at the edge."""
    root = record("u1", "user turn", "edge", "INTERNAL", -2000.0, trace="T", turn=3)
    root["attributes"] = {
        "voice_agent.session_id": SESSION,
        "voice_agent.turn_id": 3,
        "voice_agent.speech_ended_at": (T0 + 5.0) / 1000,  # epoch seconds
    }
    return [
        root,
        record("v1", "vad publish", "edge", "PRODUCER", 400.0, "SpeechEnded", parent="u1", trace="T"),
        record("v3", "vad process", "stt", "CONSUMER", 400.5, "SpeechEnded", parent="v1", trace="T"),
        record(
            "f1", "transcript publish", "stt", "PRODUCER", 450.0, "TranscriptFinal", parent="v3", trace="T"
        ),
        record(
            "f2", "transcript process", "turns", "CONSUMER", 450.3, "TranscriptFinal", parent="f1", trace="T"
        ),
        record("r1", "llm.request publish", "turns", "PRODUCER", 451.0, "LlmRequest", parent="f2", trace="T"),
        record("r2", "llm.request process", "llm", "CONSUMER", 451.4, "LlmRequest", parent="r1", trace="T"),
        record("g1", "llm generate", "llm", "INTERNAL", 452.0, parent="r2", trace="T"),
        record("c1", "tts.request publish", "llm", "PRODUCER", 640.0, "TextChunk", parent="g1", trace="T"),
        record("c2", "tts.request process", "tts", "CONSUMER", 640.6, "TextChunk", parent="c1", trace="T"),
        record("s1", "tts synthesize", "tts", "INTERNAL", 640.7, parent="c2", trace="T"),
        record("a1", "audio.out publish", "tts", "PRODUCER", 760.0, "AudioChunk", parent="s1", trace="T"),
        record("a2", "audio.out process", "edge", "CONSUMER", 760.8, "AudioChunk", parent="a1", trace="T"),
        record("p0", "playout", "edge", "INTERNAL", 779.0, parent="a2", trace="T"),
        record("p1", "playout publish", "edge", "PRODUCER", 780.0, "PlayoutStarted", parent="p0", trace="T"),
        # the greeting: another trace of the same session
        record("g0", "tts.request publish", "turns", "PRODUCER", -9000.0, "TextChunk", turn=0, trace="G"),
    ]


def index(spans: list[dict[str, Any]]) -> SpanIndex:
    return SpanIndex(parse_span(r) for r in spans)


def test_the_turn_trace_is_the_roots_trace_and_every_link_holds() -> None:
    found = turn_trace(index(connected_turn()), SESSION, 3)
    assert found is not None and found.root.span_id == "u1"
    assert found.services == {"edge", "stt", "turns", "llm", "tts"}
    assert "g0" not in {s.span_id for s in found.spans}
    assert found.orphans() == []
    broken = [r for r in connected_turn() if r["span_id"] != "r1"]  # the LlmRequest publish is lost
    orphans = turn_trace(index(broken), SESSION, 3)
    assert orphans is not None and [s.span_id for s in orphans.orphans()] == ["r2"]
    assert turn_trace(index(turn_spans()), SESSION, 3) is None  # traces without a root span


def test_the_audio_hop_and_the_end_of_speech_come_from_spans_when_they_exist() -> None:
    turn = server_turn(index(connected_turn()), SESSION, 3, LATENCY)
    audio = turn.hops[-1]
    assert (audio.message, audio.how) == ("AudioChunk", "spans")
    assert round(audio.ms, 2) == 0.8  # its delivery span, not the latency event's 1.5
    speech_end = turn.milestones["edge_speech_end"]
    assert speech_end is not None and round(speech_end - T0, 1) == 5.0  # the root's attribute
    assert not any("edge_speech_end =" in note for note in turn.notes)
