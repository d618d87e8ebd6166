"""PCM conversions around PyAV: inbound 48 kHz -> 16 kHz frames, outbound chunks
-> 48 kHz, and mono samples -> the stereo frames the Opus encoder takes."""

from __future__ import annotations

import fractions

import av
import numpy as np
import numpy.typing as npt

OUT_RATE = 48000
OUT_FRAME = 960  # 20 ms at 48 kHz
IN_RATE = 16000
IN_FRAME = 320  # 20 ms at 16 kHz

Pcm = npt.NDArray[np.int16]


class ChunkResampler:
    """PCM16 mono at any rate -> PCM16 mono at 48 kHz, one stream (one turn).

    Keeping one resampler per turn carries the filter state across pieces, so
    the joins stay click-free; ``last`` flushes the filter's few samples.
    """

    def __init__(self, out_rate: int = OUT_RATE) -> None:
        self.out_rate = out_rate
        self._resampler: av.AudioResampler | None = None
        self._rate = 0
        self._pts = 0

    def __call__(self, pcm: bytes, sample_rate: int, last: bool) -> Pcm:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype=np.int16)
        if sample_rate == self.out_rate:
            return samples.copy()
        if self._resampler is None or sample_rate != self._rate:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.out_rate)
            self._rate, self._pts = sample_rate, 0
        out: list[av.AudioFrame] = []
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = self._pts
            frame.time_base = fractions.Fraction(1, sample_rate)
            self._pts += samples.size
            out += self._resampler.resample(frame)
        if last:
            out += self._resampler.resample(None)
            self._resampler = None
        if not out:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in out]).astype(np.int16)


class InboundResampler:
    """Decoded WebRTC audio (48 kHz stereo) -> 20 ms frames of 16 kHz mono PCM16.

    ``frame_size`` makes every output frame exactly 320 samples (without it the
    first one is 304).
    """

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=IN_RATE, frame_size=IN_FRAME)

    def frames(self, frame: av.AudioFrame) -> list[Pcm]:
        return [f.to_ndarray().reshape(-1).astype(np.int16) for f in self._resampler.resample(frame)]


def stereo_frame(mono: Pcm, pts: int, rate: int = OUT_RATE) -> av.AudioFrame:
    """Packed s16 stereo frame from mono samples: the Opus encoder would
    upmix mono at -3 dB, so both channels get the full signal."""
    interleaved = np.repeat(mono.astype(np.int16), 2).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, rate)
    return frame
