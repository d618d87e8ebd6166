"""Cutting PCM16 mono audio into pieces of bounded duration (pure)."""

from __future__ import annotations

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
