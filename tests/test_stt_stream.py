"""stt logic without a bus or a model: utterance stream and decode planner on virtual time."""

from __future__ import annotations

import numpy as np
import pytest

from proto.messages import AudioFrame, SpeechEnded, SpeechStarted
from services.stt.engine import clean_text, is_near_silence, loudest_window_rms
from services.stt.planner import DecodePlanner, Job, Outcome
from services.stt.stream import ORPHAN_GRACE_S, UtteranceStream

FRAME_BYTES = 640  # 20 ms of PCM16 at 16 kHz
SID = "s1"


def frame(turn: int, session: str = SID, value: int = 1000, captured_at: float = 0.0) -> AudioFrame:
    pcm = np.full(FRAME_BYTES // 2, value, dtype="<i2").tobytes()
    return AudioFrame(session_id=session, turn_id=turn, seq=0, pcm=pcm, captured_at=captured_at)


def ended(turn: int, frame_count: int, session: str = SID, at: float = 100.0) -> SpeechEnded:
    return SpeechEnded(
        session_id=session, turn_id=turn, seq=0, at=at, decided_at=at + 0.5, frame_count=frame_count
    )


def stream() -> UtteranceStream:
    return UtteranceStream(1, partial_interval_s=0.3, final_wait_s=0.15)


def planner() -> DecodePlanner:
    return DecodePlanner(partial_interval_s=0.3, final_wait_s=0.15, session_idle_s=60.0)


def feed(p: DecodePlanner, turn: int, frames: int, session: str = SID, now: float = 0.0) -> None:
    for _ in range(frames):
        assert p.on_frame(frame(turn, session), now) is Outcome.ACCEPTED


# --- UtteranceStream ---------------------------------------------------------


def test_partial_is_due_every_interval_of_new_audio() -> None:
    u = stream()
    due_after: list[int] = []
    for i in range(1, 61):  # 1.2 s of audio
        u.add(frame(1).pcm)
        if u.partial_due():
            due_after.append(i)
            u.take_partial()
    # 300 ms = 15 frames of 20 ms
    assert due_after == [15, 30, 45, 60]


def test_partial_snapshot_holds_all_audio_as_float() -> None:
    u = stream()
    for _ in range(15):
        u.add(frame(1, value=16384).pcm)
    samples = u.take_partial()
    assert samples.dtype == np.float32
    assert samples.size == 15 * 320
    assert np.allclose(samples, 0.5)
    assert u.duration_s == 0.3


def test_no_partial_once_ended() -> None:
    u = stream()
    for _ in range(20):
        u.add(frame(1).pcm)
    u.end(ended(1, frame_count=20), now=5.0)
    assert not u.partial_due()


def test_final_ready_when_all_counted_frames_are_in() -> None:
    u = stream()
    for _ in range(9):
        u.add(frame(1).pcm)
    u.end(ended(1, frame_count=10), now=5.0)
    assert not u.final_ready(5.0)
    assert u.deadline() == 5.15
    u.add(frame(1).pcm)
    assert u.final_ready(5.0)
    assert u.deadline() is None


def test_final_waits_at_most_final_wait_for_missing_frames() -> None:
    u = stream()
    for _ in range(8):
        u.add(frame(1).pcm)
    u.end(ended(1, frame_count=10), now=5.0)
    assert not u.final_ready(5.149)
    assert u.final_ready(5.15)


def test_supersede_completes_an_ended_utterance_and_orphans_an_open_one() -> None:
    waiting = stream()
    waiting.add(frame(1).pcm)
    waiting.end(ended(1, frame_count=5), now=1.0)
    waiting.supersede(now=1.01)
    assert waiting.final_ready(1.01)  # no more frames will come: do not wait

    open_one = stream()
    open_one.add(frame(1).pcm)
    open_one.supersede(now=1.0)
    assert not open_one.partial_due()
    assert not open_one.orphaned(1.0 + ORPHAN_GRACE_S - 0.01)
    assert open_one.orphaned(1.0 + ORPHAN_GRACE_S)


# --- DecodePlanner -------------------------------------------------------------


def take(p: DecodePlanner, now: float) -> Job:
    job = p.next_job(now)
    assert job is not None
    p.finish(job)
    return job


def test_planner_hands_out_one_decode_at_a_time() -> None:
    p = planner()
    feed(p, 1, 15)
    job = p.next_job(0.3)
    assert job is not None and job.kind == "partial"
    feed(p, 1, 15)  # another partial's worth while the first decodes
    assert p.next_job(0.6) is None
    p.finish(job)
    second = p.next_job(0.6)
    assert second is not None and second.kind == "partial"
    assert second.samples.size == 30 * 320


def test_final_goes_before_pending_partials() -> None:
    p = planner()
    feed(p, 1, 20, session="a")
    feed(p, 1, 20, session="b")
    assert p.on_speech_ended(ended(1, 20, session="b"), now=1.0) is Outcome.ACCEPTED
    job = take(p, 1.0)
    assert (job.kind, job.session_id, job.turn_id) == ("final", "b", 1)
    assert job.speech_ended is not None and job.speech_ended.at == 100.0
    assert job.ended_received_at == 1.0
    assert take(p, 1.0).session_id == "a"  # then a's partial


def test_partials_rotate_over_sessions() -> None:
    p = planner()
    feed(p, 1, 15, session="a", now=0.0)
    feed(p, 1, 15, session="b", now=0.1)
    first = take(p, 0.3)
    feed(p, 1, 15, session=first.session_id)
    second = take(p, 0.4)
    assert second.session_id != first.session_id


def test_missing_frames_final_after_wait_and_late_frames_dropped() -> None:
    p = planner()
    feed(p, 1, 10)
    p.on_speech_ended(ended(1, frame_count=12), now=2.0)
    assert p.next_job(2.1) is None
    assert p.next_deadline() == 2.15
    job = take(p, 2.15)
    assert job.kind == "final" and job.samples.size == 10 * 320
    assert p.on_frame(frame(1), 2.2) is Outcome.LATE


def test_older_turn_is_stale_and_newer_turn_supersedes() -> None:
    p = planner()
    feed(p, 1, 5)
    feed(p, 2, 5)  # SpeechEnded(1) still in flight on the VAD subscription
    assert p.on_frame(frame(1), 0.1) is Outcome.STALE
    start = SpeechStarted(session_id=SID, turn_id=1, seq=0, at=0.0)
    assert p.on_speech_started(start, 0.1) is Outcome.STALE
    assert p.on_speech_ended(ended(1, frame_count=99), now=0.2) is Outcome.ACCEPTED
    job = take(p, 0.2)  # superseded: every frame of turn 1 is in, no wait
    assert (job.kind, job.turn_id, job.samples.size) == ("final", 1, 5 * 320)


def test_vad_overtaking_queued_audio_loses_no_frame() -> None:
    p = planner()
    feed(p, 1, 8)
    # VAD has its own subscription: SpeechEnded(1) and SpeechStarted(2) may be
    # handled while the last frames of turn 1 are still queued.
    p.on_speech_ended(ended(1, frame_count=10), now=1.0)
    assert (
        p.on_speech_started(SpeechStarted(session_id=SID, turn_id=2, seq=0, at=0.0), 1.0) is Outcome.ACCEPTED
    )
    assert p.next_job(1.0) is None  # still waiting for two frames
    feed(p, 1, 2, now=1.01)
    job = take(p, 1.01)
    assert (job.kind, job.turn_id, job.samples.size) == ("final", 1, 10 * 320)


def test_speech_ended_before_its_frames_waits_for_them() -> None:
    p = planner()
    p.on_speech_ended(ended(1, frame_count=3), now=1.0)
    assert p.next_job(1.0) is None
    feed(p, 1, 3, now=1.05)
    job = take(p, 1.05)
    assert (job.kind, job.samples.size) == ("final", 3 * 320)


def test_speech_ended_without_frames_gives_an_empty_final() -> None:
    p = planner()
    p.on_speech_ended(ended(3, frame_count=0), now=1.0)
    job = take(p, 1.0)
    assert job.kind == "final" and job.turn_id == 3 and job.samples.size == 0


def test_closed_session_drops_everything_and_is_not_reopened_by_late_frames() -> None:
    p = planner()
    feed(p, 1, 20)
    assert p.active_sessions == 1
    assert p.close(SID)
    assert p.active_sessions == 0
    assert p.on_frame(frame(1), 1.0) is Outcome.SESSION_ENDED
    assert p.next_job(1.0) is None
    p.open(SID, 2.0)  # a SessionStarted reopens it
    assert p.on_frame(frame(2), 2.0) is Outcome.ACCEPTED


def test_bad_audio_and_idle_sessions() -> None:
    p = planner()
    half_sample = AudioFrame(session_id=SID, turn_id=1, seq=0, pcm=b"\0" * 641)
    assert p.on_frame(half_sample, 0.0) is Outcome.BAD_AUDIO
    odd_rate = AudioFrame(session_id=SID, turn_id=1, seq=0, pcm=b"\0\0", sample_rate=48000)
    assert p.on_frame(odd_rate, 0.0) is Outcome.BAD_AUDIO
    feed(p, 1, 1, now=0.0)
    assert p.expire(59.0) == []
    assert p.expire(60.5) == [SID]
    assert p.active_sessions == 0


def test_orphaned_utterance_is_dropped_without_a_final() -> None:
    p = planner()
    feed(p, 1, 5)
    feed(p, 2, 5, now=1.0)  # SpeechEnded(1) never comes
    assert p.next_job(1.0 + ORPHAN_GRACE_S) is None
    # turn 1 is gone: its SpeechEnded is stale now
    assert p.on_speech_ended(ended(1, frame_count=5), now=5.0) is Outcome.STALE
    assert p.next_job(5.0) is None


def test_final_reuses_a_partial_that_heard_past_the_last_voiced_moment() -> None:
    p = planner()
    for i in range(30):  # 0.6 s captured from t=100.0; speech ends at 100.4
        p.on_frame(frame(1, captured_at=100.0 + i * 0.02), 0.0)
    partial = take_partial_with(p, "hello there")
    assert partial.heard_until == pytest.approx(100.6)
    p.on_speech_ended(ended(1, frame_count=30, at=100.4), now=1.0)
    final = take(p, 1.0)
    assert final.kind == "final" and final.text == "hello there"


def test_final_is_decoded_when_no_partial_heard_enough() -> None:
    for speech_end, reuse in ((100.52, True), (100.4, False)):
        p = DecodePlanner(
            partial_interval_s=0.3, final_wait_s=0.15, session_idle_s=60.0, reuse_partials=reuse
        )
        for i in range(30):
            p.on_frame(frame(1, captured_at=100.0 + i * 0.02), 0.0)
        take_partial_with(p, "hello")
        p.on_speech_ended(ended(1, frame_count=30, at=speech_end), now=1.0)
        final = take(p, 1.0)
        assert final.kind == "final" and final.text is None  # 100.6 < 100.52 + 0.1, or reuse off


def test_frames_without_capture_time_never_reuse_a_partial() -> None:
    p = planner()
    feed(p, 1, 30)
    take_partial_with(p, "hello")
    p.on_speech_ended(ended(1, frame_count=30, at=0.1), now=1.0)
    assert take(p, 1.0).text is None


def take_partial_with(p: DecodePlanner, text: str) -> Job:
    job = p.next_job(0.0)
    assert job is not None and job.kind == "partial"
    p.finish(job, text)
    return job


# --- engine helpers (no model) -------------------------------------------------


def test_near_silence_guard() -> None:
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(16000) * 0.001).astype(np.float32)
    assert is_near_silence(quiet, 0.003)
    blip = quiet.copy()
    blip[8000:8320] = 0.05  # one loud 20 ms window makes it worth decoding
    assert not is_near_silence(blip, 0.003)
    assert loudest_window_rms(blip) > 0.04
    assert is_near_silence(np.full(800, 0.5, dtype=np.float32), 0.003)  # 50 ms: too short


def test_clean_text_drops_punctuation_only_output() -> None:
    assert clean_text(" . ") == ""
    assert clean_text("  Hello   there. ") == "Hello there."
