"""The fake microphone's WAV: real human speech, several utterances with pauses.

Silence first (the agent greets the user), then each LibriVox utterance followed by
enough silence for the agent's reply to play out. 16 kHz mono PCM16, as Chromium's
``--use-file-for-fake-audio-capture`` wants it.
"""

from __future__ import annotations

import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
SAMPLE_RATE = 16000
LOUD_RMS = 0.01  # a block louder than this (full scale 1.0) is speech, in the WAV and in the page
BLOCK_S = 0.005


@dataclass(frozen=True)
class Utterance:
    name: str
    text: str
    pcm: np.ndarray  # int16 mono at 16 kHz


@dataclass(frozen=True)
class Placed:
    """An utterance's place in the WAV, in seconds from its start: the whole
    recording (``start_s``-``end_s``) and its loud part (``speech_*``)."""

    name: str
    text: str
    start_s: float
    end_s: float
    speech_start_s: float
    speech_end_s: float


@dataclass(frozen=True)
class MicrophonePlan:
    utterances: list[Placed]
    duration_s: float


def load_librivox(folder: Path = LIBRIVOX) -> list[Utterance]:
    """The LibriVox test utterances (Debian ``pocketsphinx-testdata``) with their transcripts."""
    transcription = folder / "transcription"
    if not transcription.exists():
        raise SystemExit(f"{transcription} not found: install Debian pocketsphinx-testdata (make test-deps)")
    found: list[Utterance] = []
    for line in transcription.read_text().splitlines():
        match = re.match(r"<s>\s*(.*?)\s*</s>\s*\((.+)\)", line)
        if not match:
            continue
        name = match.group(2)
        with wave.open(str(folder / f"{name}.wav")) as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise ValueError(f"{name}.wav is not 16 kHz mono PCM16")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        found.append(Utterance(name, match.group(1), pcm))
    return sorted(found, key=lambda u: u.name)


def loud_span(pcm: np.ndarray, threshold: float = LOUD_RMS) -> tuple[float, float]:
    """Start of the first and end of the last 5 ms block louder than ``threshold`` (s)."""
    block = round(BLOCK_S * SAMPLE_RATE)
    usable = pcm[: pcm.size // block * block].astype(np.float64) / 32768
    rms = np.sqrt((usable.reshape(-1, block) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > threshold)
    if loud.size == 0:
        raise ValueError("no speech in the recording")
    return float(loud[0] * BLOCK_S), float((loud[-1] + 1) * BLOCK_S)


def plan(utterances: list[Utterance], lead_in_s: float, gap_s: float) -> tuple[MicrophonePlan, np.ndarray]:
    """Lay out silence, utterance, silence, utterance ...; returns the plan and the samples."""
    pieces = [np.zeros(round(lead_in_s * SAMPLE_RATE), dtype=np.int16)]
    placed: list[Placed] = []
    position = pieces[0].size
    for utterance in utterances:
        start = position / SAMPLE_RATE
        position += utterance.pcm.size
        loud_start, loud_end = loud_span(utterance.pcm)
        placed.append(
            Placed(
                utterance.name,
                utterance.text,
                round(start, 3),
                round(position / SAMPLE_RATE, 3),
                round(start + loud_start, 3),
                round(start + loud_end, 3),
            )
        )
        gap = np.zeros(round(gap_s * SAMPLE_RATE), dtype=np.int16)
        pieces += [utterance.pcm, gap]
        position += gap.size
    return MicrophonePlan(placed, position / SAMPLE_RATE), np.concatenate(pieces)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.astype(np.int16).tobytes())
