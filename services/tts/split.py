"""Cutting PCM16 mono audio into pieces of bounded duration (pure)."""

from __future__ import annotations

import numpy as np

BYTES_PER_SAMPLE = 2


def max_piece_bytes(sample_rate: int, max_ms: int) -> int:
    """Bytes in ``max_ms`` of PCM16 mono, whole samples, at least one sample."""
    if sample_rate <= 0 or max_ms <= 0:
        raise ValueError(f"sample_rate and max_ms must be positive: {sample_rate}, {max_ms}")
    return max(1, sample_rate * max_ms // 1000) * BYTES_PER_SAMPLE


def split_pcm(pcm: bytes, sample_rate: int, max_ms: int) -> list[bytes]:
    """Consecutive pieces of ``pcm`` of at most ``max_ms`` each; they join back to ``pcm``.

    Cuts fall on sample boundaries; a trailing odd byte (half a sample) is dropped
    because no consumer could play it.
    """
    size = max_piece_bytes(sample_rate, max_ms)
    usable = len(pcm) - len(pcm) % BYTES_PER_SAMPLE
    return [pcm[start : min(start + size, usable)] for start in range(0, usable, size)]


# Piper starts each utterance with 30-75 ms of near-silence (measured on the bundled
# voice): at a reply's start that is dead air the user waits through.
SILENCE_LEVEL = 32768 * 10 ** (-50 / 20)  # -50 dBFS
LEAD_MARGIN_MS = 10


def trim_leading_silence(pcm: bytes, sample_rate: int, *, window_ms: int = 5) -> bytes:
    """``pcm`` from ``LEAD_MARGIN_MS`` before its first window louder than -50 dBFS
    (unchanged if it never gets that loud)."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % BYTES_PER_SAMPLE], dtype="<i2")
    window = max(1, sample_rate * window_ms // 1000)
    usable = samples.size // window * window
    if usable == 0:
        return pcm
    rms = np.sqrt(np.square(samples[:usable].astype(np.float64)).reshape(-1, window).mean(axis=1))
    loud = np.flatnonzero(rms > SILENCE_LEVEL)
    if loud.size == 0:
        return pcm
    start = max(0, int(loud[0]) * window - sample_rate * LEAD_MARGIN_MS // 1000)
    return pcm[start * BYTES_PER_SAMPLE :]
