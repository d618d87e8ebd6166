"""One generation of a user utterance as it arrives: its audio, when a partial,
the speculative final or the final is due.

Pure logic: no bus, no clock of its own. Callers pass ``now`` (monotonic seconds),
so tests run on virtual time.

A generation that continues a paused one (SpeechStarted.continues) starts with
that one's audio (``carry``): its transcript covers the whole utterance. The
speculative final is decoded at SpeechPaused; the final of the same generation
reuses its text, since only silence can have followed (any speech would have
made a new generation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proto.messages import SpeechEnded, SpeechPaused

SAMPLE_RATE = 16000
BYTES_PER_SAMPLE = 2
# An utterance superseded by a newer turn but never ended (its SpeechEnded was
# lost) is dropped after this long; SpeechEnded normally arrives within
# milliseconds, since the edge sends it before the next turn's first frame.
ORPHAN_GRACE_S = 2.0
# A partial that heard this far past the last voiced moment (SpeechEnded.at,
# from the edge's VAD) heard the whole utterance: the rest is endpointing
# silence, so its text can be the final without decoding again. The margin
# covers soft word endings the VAD scores below its threshold.
SPEECH_TAIL_S = 0.1


@dataclass(frozen=True)
class HeardBefore:
    """The newest partial of an utterance: its text and how much of the audio it heard
    (services/stt/window.py joins a decode of the newest seconds to it)."""

    text: str
    audio_s: float


class UtteranceStream:
    """Audio of utterance ``turn_id`` and the decisions about decoding it."""

    def __init__(self, turn_id: int, *, partial_interval_s: float, final_wait_s: float) -> None:
        self.turn_id = turn_id
        self.frames = 0  # frames of this generation (carried audio not counted)
        self.ended: SpeechEnded | None = None
        self.ended_received_at = 0.0  # our monotonic clock, for the latency metric
        self.paused: SpeechPaused | None = None
        self._paused_received_at = 0.0
        self.speculated = False  # the speculative decode was handed out
        self.speculative_text: str | None = None  # its result
        self._pcm = bytearray()
        self._partial_interval_bytes = int(partial_interval_s * SAMPLE_RATE) * BYTES_PER_SAMPLE
        self._final_wait_s = final_wait_s
        self._bytes_at_last_partial = 0
        self._superseded_at: float | None = None
        self._heard_until = 0.0  # edge clock: end of the newest frame
        self._partial: tuple[float, str] | None = None  # (heard until, text) of the newest partial
        self._heard_before: HeardBefore | None = None  # the same partial, by audio length

    @property
    def duration_s(self) -> float:
        return len(self._pcm) / BYTES_PER_SAMPLE / SAMPLE_RATE

    @property
    def heard_until(self) -> float:
        """Capture time (edge clock) of the end of the newest frame; 0 if frames carry none."""
        return self._heard_until

    def add(self, pcm: bytes, captured_at: float = 0.0) -> None:
        """Append one AudioFrame's PCM16 (frames of a turn arrive in order on one subject)."""
        self._pcm += pcm
        self.frames += 1
        if captured_at > 0:
            self._heard_until = captured_at + len(pcm) / BYTES_PER_SAMPLE / SAMPLE_RATE

    def carry(self, previous: UtteranceStream) -> None:
        """Start with the audio of the paused generation this one continues."""
        self._pcm[:0] = previous._pcm
        self._bytes_at_last_partial = previous._bytes_at_last_partial
        self._heard_until = max(self._heard_until, previous._heard_until)
        if self._heard_before is None:
            self._heard_before = previous._heard_before

    def end(self, message: SpeechEnded, now: float) -> None:
        if self.ended is None:
            self.ended = message
            self.ended_received_at = now

    def pause(self, message: SpeechPaused, now: float) -> None:
        if self.paused is None:
            self.paused = message
            self._paused_received_at = now

    def speculation_due(self, now: float) -> bool:
        """Paused and not yet decided either way: decode what was said so far,
        once the frames up to the pause are in (or the wait for them is over)."""
        if self.paused is None or self.speculated or self.ended is not None:
            return False
        if self._superseded_at is not None:
            return False  # speech went on: the speculation is void
        return self.frames >= self.paused.frame_count or now >= self._paused_received_at + self._final_wait_s

    def take_speculation(self) -> np.ndarray:
        self.speculated = True
        self._bytes_at_last_partial = len(self._pcm)
        return self.samples()

    def supersede(self, now: float) -> None:
        """A newer turn began: the edge has sent every frame of this one."""
        if self._superseded_at is None:
            self._superseded_at = now

    @property
    def all_frames_in(self) -> bool:
        if self._superseded_at is not None:
            return True
        return self.ended is not None and self.frames >= self.ended.frame_count

    def partial_due(self) -> bool:
        """Enough new audio since the last partial, and the utterance still open."""
        if self.ended is not None or self._superseded_at is not None or self.paused is not None:
            return False  # paused: only silence comes now, the speculative final says it all
        return len(self._pcm) - self._bytes_at_last_partial >= self._partial_interval_bytes

    def take_partial(self) -> np.ndarray:
        """The audio so far, for a partial; the next one is due an interval later."""
        self._bytes_at_last_partial = len(self._pcm)
        return self.samples()

    def partial_decoded(self, heard_until: float, text: str, audio_s: float = 0.0) -> None:
        """Record a partial's text and how far into the audio it heard (edge capture
        time, and seconds of this utterance's audio)."""
        if self._partial is None or heard_until >= self._partial[0]:
            self._partial = (heard_until, text)
        if self._heard_before is None or audio_s >= self._heard_before.audio_s:
            self._heard_before = HeardBefore(text, audio_s)

    @property
    def heard_before(self) -> HeardBefore | None:
        """The newest partial's text and the seconds of audio it heard, if any."""
        return self._heard_before

    def text_for_final(self) -> str | None:
        """A partial's text when that partial heard every voiced frame, else None."""
        if self.ended is None or self._partial is None or self.ended.at <= 0:
            return None
        heard_until, text = self._partial
        return text if heard_until >= self.ended.at + SPEECH_TAIL_S else None

    def final_ready(self, now: float) -> bool:
        """Ended, and every frame is in or the wait for missing ones is over."""
        if self.ended is None:
            return False
        if self.speculative_text is not None:
            return True  # the frames still on the way are silence
        return self.all_frames_in or now >= self.ended_received_at + self._final_wait_s

    def orphaned(self, now: float) -> bool:
        """Superseded long ago and never ended: nobody waits for its final."""
        if self.ended is not None or self._superseded_at is None:
            return False
        return now >= self._superseded_at + ORPHAN_GRACE_S

    def deadline(self) -> float | None:
        """When this utterance changes state without a new message, if it will."""
        if self.ended is not None and not self.all_frames_in:
            return self.ended_received_at + self._final_wait_s
        if self.ended is None and self._superseded_at is not None:
            return self._superseded_at + ORPHAN_GRACE_S
        if self.paused is not None and not self.speculated and self.frames < self.paused.frame_count:
            return self._paused_received_at + self._final_wait_s
        return None

    def samples(self) -> np.ndarray:
        """The utterance as float32 in -1..1, what the recognizers take."""
        pcm = np.frombuffer(bytes(self._pcm), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0
