"""stt's part in speculation, on virtual time: the speculative final at a pause,
the confirmed final reusing it, and a continued generation carrying the audio of
the paused one."""

from __future__ import annotations

from proto.messages import SpeechPaused, SpeechStarted
from services.stt.planner import DecodePlanner, Job, Outcome
from tests.test_stt_stream import SID, ended, feed, frame, planner, take


def paused(turn: int, frame_count: int, at: float = 100.0) -> SpeechPaused:
    return SpeechPaused(
        session_id=SID, turn_id=turn, seq=0, at=at, decided_at=at + 0.02, frame_count=frame_count
    )


def continues(turn: int, previous: int) -> SpeechStarted:
    return SpeechStarted(session_id=SID, turn_id=turn, seq=0, at=0.0, continues=previous)


def take_speculative(p: DecodePlanner, now: float, text: str) -> Job:
    job = p.next_job(now)
    assert job is not None and job.kind == "speculative"
    p.finish(job, text)
    return job


def test_pause_hands_out_a_speculative_decode_of_everything_so_far() -> None:
    p = planner()
    feed(p, 1, 10)
    assert p.on_speech_paused(paused(1, frame_count=12), 1.0) is Outcome.ACCEPTED
    assert p.next_job(1.0) is None  # two frames up to the pause are still on the way
    assert p.next_deadline() == 1.15
    feed(p, 1, 2, now=1.01)
    job = p.next_job(1.01)
    assert job is not None and job.kind == "speculative" and job.samples.size == 12 * 320
    assert job.paused is not None and job.paused.at == 100.0
    assert p.is_live(job)
    p.finish(job, "hello there.")
    assert p.next_job(1.02) is None  # once per pause


def test_speculation_goes_before_partials_and_stops_them() -> None:
    p = planner()
    feed(p, 1, 20, session="other")  # a partial is due for another session
    feed(p, 1, 20)
    p.on_speech_paused(paused(1, frame_count=20), 1.0)
    job = take_speculative(p, 1.0, "hi")
    assert job.session_id == SID
    feed(p, 1, 30, now=1.1)  # 600 ms of pause: only silence comes
    partial = p.next_job(1.2)
    assert partial is not None and partial.session_id == "other"


def test_confirmed_final_reuses_the_speculative_text_at_once() -> None:
    p = planner()
    feed(p, 1, 20)
    p.on_speech_paused(paused(1, frame_count=20), 1.0)
    take_speculative(p, 1.0, "What time is it?")
    feed(p, 1, 5, now=1.1)
    # The frames of the silence may still be on their way: no need to wait for them.
    p.on_speech_ended(ended(1, frame_count=40), now=1.3)
    final = take(p, 1.3)
    assert (final.kind, final.text) == ("final", "What time is it?")


def test_end_during_the_speculative_decode_reuses_it_and_voids_its_publication() -> None:
    p = planner()
    feed(p, 1, 20)
    p.on_speech_paused(paused(1, frame_count=20), 1.0)
    job = p.next_job(1.0)
    assert job is not None and job.kind == "speculative"
    p.on_speech_ended(ended(1, frame_count=20), now=1.1)
    assert not p.is_live(job)  # the confirmed final says it: one message, not two
    p.finish(job, "Yes.")
    final = take(p, 1.1)
    assert (final.kind, final.text) == ("final", "Yes.")


def test_a_failed_speculation_leaves_the_final_to_a_decode() -> None:
    p = planner()
    feed(p, 1, 20)
    p.on_speech_paused(paused(1, frame_count=20), 1.0)
    job = p.next_job(1.0)
    assert job is not None
    p.finish(job, None)
    p.on_speech_ended(ended(1, frame_count=20), now=1.1)
    final = take(p, 1.1)
    assert final.kind == "final" and final.text is None


def test_continued_generation_carries_the_paused_audio() -> None:
    p = planner()
    feed(p, 1, 20)
    p.on_speech_paused(paused(1, frame_count=20), 1.0)
    job = take_speculative(p, 1.0, "I think")
    feed(p, 1, 5, now=1.05)  # the pause
    assert p.on_speech_started(continues(2, 1), 1.1) is Outcome.ACCEPTED
    feed(p, 2, 15, now=1.1)
    assert not p.is_live(job)  # a speculative final decoded now must not be published
    p.on_speech_ended(ended(2, frame_count=15), now=1.5)
    final = take(p, 1.5)
    assert (final.kind, final.turn_id, final.text) == ("final", 2, None)  # decoded again, in full
    assert final.samples.size == (20 + 5 + 15) * 320
    assert p.on_frame(frame(1), 1.6) is Outcome.STALE


def test_continuation_known_after_its_frames_still_carries_and_drops_no_audio() -> None:
    p = planner()
    feed(p, 1, 20)
    p.on_speech_paused(paused(1, frame_count=20), 1.0)
    # VAD has its own subscription: the frames of 2 may come before SpeechStarted(2).
    feed(p, 2, 10, now=1.1)
    p.on_speech_started(continues(2, 1), 1.2)
    p.on_speech_paused(paused(2, frame_count=10), 1.2)
    job = take_speculative(p, 1.2, "I think so.")
    assert (job.turn_id, job.samples.size) == (2, 30 * 320)


def test_late_frames_of_the_paused_generation_join_the_continuation() -> None:
    p = planner()
    feed(p, 1, 10)
    p.on_speech_started(continues(2, 1), 1.0)  # overtook the last frames of 1
    feed(p, 1, 3, now=1.01)
    feed(p, 2, 10, now=1.02)
    p.on_speech_ended(ended(2, frame_count=10), now=1.3)
    final = take(p, 1.3)
    assert final.turn_id == 2 and final.samples.size == 23 * 320


def test_partials_of_a_continuation_cover_the_whole_utterance() -> None:
    p = planner()
    feed(p, 1, 20)
    p.on_speech_paused(paused(1, frame_count=20), 1.0)
    take_speculative(p, 1.0, "so")
    p.on_speech_started(continues(2, 1), 1.1)
    feed(p, 2, 14, now=1.1)
    assert p.next_job(1.2) is None  # 280 ms since the speculative decode's snapshot
    feed(p, 2, 1, now=1.2)
    partial = p.next_job(1.2)
    assert partial is not None and partial.kind == "partial" and partial.turn_id == 2
    assert partial.samples.size == 35 * 320


def test_with_two_lanes_the_speculation_does_not_wait_for_the_partial_in_flight() -> None:
    p = planner()
    feed(p, 1, 20)
    partial = p.next_job(1.0, "partial")
    assert partial is not None and partial.kind == "partial"
    assert p.next_job(1.0, "urgent") is None  # nothing urgent yet
    p.on_speech_paused(paused(1, frame_count=20), 1.05)
    job = p.next_job(1.05, "urgent")
    assert job is not None and job.kind == "speculative"  # while the partial still runs
    assert p.next_job(1.05, "partial") is None  # one decode per lane
    p.finish(job, "hello there.")
    assert p.wants_partial(partial)  # its words may still confirm a barge-in
    p.finish(partial, "hello")
    assert p.next_job(1.1, "urgent") is None and p.next_job(1.1, "partial") is None


def test_one_lane_takes_every_kind_one_at_a_time() -> None:
    p = planner()
    feed(p, 1, 20)
    partial = p.next_job(1.0)
    assert partial is not None and partial.kind == "partial" and p.wants_partial(partial)
    p.on_speech_paused(paused(1, frame_count=20), 1.05)
    assert p.next_job(1.05) is None  # waits for the partial
    p.finish(partial, "hello")
    take_speculative(p, 1.1, "hello there.")
