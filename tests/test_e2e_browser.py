"""End to end through Debian's headless Chromium: the page, a fake microphone playing
real LibriVox speech, the whole agent (`python -m stack`), the reply heard in the page."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from tests.browser_page import silence, talk, write_microphone_wav
from tests.e2e_audio import looks_like_english, transcribe
from tests.stack_process import StackProcess
from tests.support import librivox_utterances, word_error_rate

pytestmark = pytest.mark.e2e
LEAD_IN_S = 6.0  # the greeting plays first; the user speaks after it
TAIL_S = 14.0
RMS_SPEECH = 0.01


def _last_loud(timeline: list[list[float]]) -> float:
    return max(t for t, rms in timeline if rms > RMS_SPEECH)


def _first_loud_after(timeline: list[list[float]], after: float) -> float | None:
    return next((t for t, rms in timeline if t > after and rms > RMS_SPEECH), None)


def test_browser_conversation(agent_stack: StackProcess, tmp_path: Path) -> None:
    utterance = next(u for u in librivox_utterances() if u.name.endswith("0870"))
    wav = tmp_path / "microphone.wav"
    seconds = write_microphone_wav(wav, silence(LEAD_IN_S), utterance.pcm16(), silence(TAIL_S))
    seconds += 3  # the whole WAV, and the reply after it
    result = talk(agent_stack, wav, seconds, tmp_path / "result.json")
    events = result["events"]
    kinds = [e.get("type") for e in events]
    finals = [e for e in events if e.get("type") == "transcript" and e.get("final") and e["turn_id"] >= 1]
    assert finals, f"no final transcript in the page: {kinds}\n{result['console']}\n{agent_stack.log_tail()}"
    # Chromium's audio processing (noise suppression, AGC) and Opus sit between the WAV and
    # Whisper tiny.en here: a long sentence (22 words) keeps one misheard word from
    # deciding the test; Whisper alone hears it with WER ~0.05.
    assert word_error_rate(utterance.text, finals[0]["text"]) <= 0.3, finals[0]["text"]
    agent_words = "".join(
        e["text"] for e in events if e.get("type") == "agent_text" and e["turn_id"] == finals[0]["turn_id"]
    )
    assert agent_words.strip(), f"no agent text for the turn: {kinds}"
    assert "latency" in kinds and "state" in kinds

    speech_end = _last_loud(result["mic"])
    reply_start = _first_loud_after(result["remote"], speech_end)
    assert reply_start is not None, "no reply audio on the page's remote track"
    pcm = np.frombuffer(base64.b64decode(result["remotePcmBase64"]), dtype=np.int16)
    rate = int(result["remoteSampleRate"])
    # The PCM is the remote tap's blocks in order; find the reply by block index, not by
    # time: a starved renderer skips or bunches tap callbacks, and then wall time and
    # the PCM drift apart (we saw 18.8 s of PCM over a 22.7 s timeline).
    timeline = result["remote"]
    block = pcm.size // len(timeline)
    first = next(i for i, (t, _) in enumerate(timeline) if t >= reply_start)
    last = max(i for i, (_, rms) in enumerate(timeline) if rms > RMS_SPEECH)
    reply = pcm[max(0, first * block - rate // 10) : (last + 1) * block + rate // 2]
    heard = transcribe(reply, rate)
    assert looks_like_english(heard), heard
    print(f"browser: voice-to-voice {reply_start - speech_end:.0f} ms; agent said {heard!r}")
