from __future__ import annotations

import msgspec
import pytest

from proto import codec, subjects
from proto import messages as m

SAMPLES: list[tuple[subjects.Channel, msgspec.Struct]] = [
    (subjects.SESSION, m.SessionStarted(session_id="s1", turn_id=0, seq=1, started_at=1.5)),
    (subjects.SESSION, m.SessionEnded(session_id="s1", turn_id=3, seq=9)),
    (subjects.AUDIO_IN, m.AudioFrame(session_id="s1", turn_id=1, seq=2, pcm=b"\x00\x01" * 320)),
    (subjects.VAD, m.SpeechStarted(session_id="s1", turn_id=1, seq=3, at=2.0)),
    (subjects.VAD, m.SpeechStarted(session_id="s1", turn_id=3, seq=3, at=2.5, continues=2)),
    (subjects.VAD, m.SpeechPaused(session_id="s1", turn_id=2, seq=3, at=2.2, decided_at=2.22, frame_count=9)),
    (subjects.VAD, m.SpeechEnded(session_id="s1", turn_id=1, seq=4, at=3.0, decided_at=3.4)),
    (subjects.TRANSCRIPT, m.TranscriptPartial(session_id="s1", turn_id=1, seq=5, text="hel")),
    (
        subjects.TRANSCRIPT,
        m.TranscriptPartial(session_id="s1", turn_id=1, seq=5, text="hel", heard_until=2.5),
    ),
    (subjects.TRANSCRIPT, m.TranscriptFinal(session_id="s1", turn_id=1, seq=6, text="hello")),
    (
        subjects.TRANSCRIPT,
        m.TranscriptFinal(session_id="s1", turn_id=2, seq=6, text="hi", speculative=True, heard_until=3.0),
    ),
    (
        subjects.LLM_REQUEST,
        m.LlmRequest(
            session_id="s1",
            turn_id=1,
            seq=7,
            messages=[m.ChatMessage("system", "be brief"), m.ChatMessage("user", "hi")],
        ),
    ),
    (
        subjects.LLM_REQUEST,
        m.LlmPrime(session_id="s1", turn_id=1, seq=6, messages=[m.ChatMessage("user", "h")], max_tokens=60),
    ),
    (subjects.LLM_STREAM, m.LlmToken(session_id="s1", turn_id=1, seq=8, text="Hi", index=0)),
    (
        subjects.LLM_STREAM,
        m.LlmDone(session_id="s1", turn_id=1, seq=9, text="Hi", tokens=1, first_token_at=1.0),
    ),
    (subjects.TTS_REQUEST, m.TextChunk(session_id="s1", turn_id=1, seq=10, text="Hi.", index=0)),
    (
        subjects.AUDIO_OUT,
        m.AudioChunk(
            session_id="s1", turn_id=1, seq=11, chunk_index=0, part=0, pcm=b"\x01\x02", sample_rate=22050
        ),
    ),
    (subjects.CONTROL, m.Cancel(session_id="s1", turn_id=1, seq=12)),
    (subjects.PLAYOUT, m.PlayoutStarted(session_id="s1", turn_id=1, seq=13, at=4.0)),
    (
        subjects.PLAYOUT,
        m.PlayoutFinished(session_id="s1", turn_id=1, seq=14, heard_text="Hi", interrupted=True, at=5.0),
    ),
    (subjects.STATE, m.AgentState(session_id="s1", turn_id=1, seq=15, state="speaking")),
    (
        subjects.STATE,
        m.TurnLatency(
            session_id="s1",
            turn_id=1,
            seq=16,
            stt_final_ms=1,
            llm_first_token_ms=2,
            tts_first_audio_ms=3,
            first_audio_out_ms=4,
        ),
    ),
    (subjects.REPLICAS, m.ReplicaStatus(service="stt", replica="stt-7f9c-12", sessions=3, draining=True)),
]

HANDOVER = m.Handover(history=[m.ChatMessage("user", "hi"), m.ChatMessage("assistant", "Hello", True)])
ENDPOINT_SAMPLES: list[tuple[subjects.Endpoint, msgspec.Struct, msgspec.Struct]] = [
    (
        subjects.ASSIGN,
        m.AssignRequest(session_id="s1", turn_id=0, seq=0),
        m.AssignReply(session_id="s1", turn_id=0, seq=0, replica="turns-1"),
    ),
    (
        subjects.LEASE,
        m.AssignRequest(session_id="s1", turn_id=0, seq=0, handover=HANDOVER),
        m.AssignReply(session_id="s1", turn_id=0, seq=0, replica="turns-2", accepted=False),
    ),
    (
        subjects.LEASE,
        m.LeaseRenew(session_id="s1", turn_id=0, seq=0),
        m.LeaseReply(session_id="s1", turn_id=0, seq=0, status="released", handover=HANDOVER),
    ),
    (
        subjects.LEASE,
        m.LeaseRevoke(session_id="s1", turn_id=0, seq=0),
        m.LeaseReply(session_id="s1", turn_id=0, seq=0, status="unknown"),
    ),
]


@pytest.mark.parametrize(("channel", "message"), SAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip(channel: subjects.Channel, message: msgspec.Struct) -> None:
    assert codec.decode(channel, codec.encode(message)) == message


def test_speculation_fields_default_for_older_writers() -> None:
    # A previous release writes none of the speculation fields: readers get the
    # non-speculative defaults, so an old edge or stt never triggers speculation.
    old_final = msgspec.msgpack.encode(
        {"type": "TranscriptFinal", "session_id": "s", "turn_id": 1, "seq": 1, "text": "hi"}
    )
    final = codec.decode(subjects.TRANSCRIPT, old_final)
    assert isinstance(final, m.TranscriptFinal)
    assert (final.speculative, final.heard_until) == (False, 0.0)
    old_start = msgspec.msgpack.encode(
        {"type": "SpeechStarted", "session_id": "s", "turn_id": 2, "seq": 1, "at": 1.0}
    )
    started = codec.decode(subjects.VAD, old_start)
    assert isinstance(started, m.SpeechStarted) and started.continues == 0
    old_request = msgspec.msgpack.encode(
        {"type": "LlmRequest", "session_id": "s", "turn_id": 1, "seq": 1, "messages": []}
    )
    request = codec.decode(subjects.LLM_REQUEST, old_request)
    assert isinstance(request, m.LlmRequest) and request.speculative is False


def test_every_message_class_has_a_sample() -> None:
    unions = {c.name: c.union for c in subjects.ALL_CHANNELS}
    classes = {cls for union in unions.values() for cls in getattr(union, "__args__", (union,))}
    assert classes == {type(message) for _, message in SAMPLES}


def test_every_channel_has_a_sample() -> None:
    assert {c.name for c, _ in SAMPLES} == {c.name for c in subjects.ALL_CHANNELS}


def test_audio_travels_as_raw_bytes() -> None:
    pcm = bytes(range(256)) * 4
    data = codec.encode(m.AudioFrame(session_id="s", turn_id=0, seq=1, pcm=pcm))
    assert pcm in data  # msgpack bin, not base64 or a list of ints
    assert len(data) < len(pcm) + 128  # field names, not an encoding of the audio


def test_wrong_type_on_a_channel_is_rejected() -> None:
    data = codec.encode(m.Cancel(session_id="s", turn_id=1, seq=1))
    with pytest.raises(msgspec.ValidationError):
        codec.decode(subjects.AUDIO_IN, data)


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        codec.decode(subjects.VAD, b"\xc1\xff not msgpack")


def test_unknown_fields_are_ignored_for_rolling_upgrades() -> None:
    newer = msgspec.msgpack.encode(
        {"type": "Cancel", "session_id": "s", "turn_id": 2, "seq": 1, "reason": "x", "added_later": 5}
    )
    assert codec.decode(subjects.CONTROL, newer) == m.Cancel(session_id="s", turn_id=2, seq=1, reason="x")


def test_subjects_reject_unsafe_session_ids() -> None:
    assert subjects.AUDIO_IN.subject("abc") == "va.audio.in.abc"
    assert subjects.LLM_REQUEST.subject() == "va.llm.request"
    for bad in ("a.b", "*", ">", ""):
        with pytest.raises(ValueError):
            subjects.AUDIO_IN.subject(bad)


@pytest.mark.parametrize(("endpoint", "request_", "reply"), ENDPOINT_SAMPLES, ids=lambda x: type(x).__name__)
def test_assignment_requests_and_replies_round_trip(
    endpoint: subjects.Endpoint, request_: msgspec.Struct, reply: msgspec.Struct
) -> None:
    assert codec.decode_union(endpoint.union, codec.encode(request_)) == request_
    assert codec.decode_union(endpoint.reply_union, codec.encode(reply)) == reply


def test_every_assignment_message_has_a_sample() -> None:
    unions = [u for e in (subjects.ASSIGN, subjects.LEASE) for u in (e.union, e.reply_union)]
    classes = {cls for union in unions for cls in getattr(union, "__args__", (union,))}
    assert classes == {type(x) for _, request, reply in ENDPOINT_SAMPLES for x in (request, reply)}


def test_assignment_subjects() -> None:
    assert subjects.ASSIGN.subject("stt") == "va.assign.stt"
    assert subjects.LEASE.subject("turns", "pod-7f9c-12") == "va.lease.turns.pod-7f9c-12"
    for bad in ("a.b", "*", ">", "", "two words"):
        with pytest.raises(ValueError):
            subjects.LEASE.subject("turns", bad)
