"""Driving the edge's page in Debian's headless Chromium (tests/browser/talk.mjs): a
fake microphone WAV in, what the page saw and heard out."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np

from tests.stack_process import StackProcess

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
RATE = 16000


def write_microphone_wav(path: Path, *parts: np.ndarray) -> float:
    """The parts (16 kHz PCM16) one after another as a WAV; returns its length (s)."""
    samples = np.concatenate(parts)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return samples.size / RATE


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def talk(agent: StackProcess, wav: Path, seconds: float, out: Path) -> dict[str, Any]:
    """Open the page with ``wav`` as the microphone, press Talk, listen ``seconds``:
    the page's events, the microphone and remote-voice timelines, the remote PCM."""
    assert shutil.which("node"), "node is needed for the browser tests (Debian nodejs)"
    run = subprocess.run(
        ["node", "talk.mjs", f"{agent.edge_url}/", str(wav), str(out), str(seconds)],
        cwd=BROWSER_DIR,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    assert run.returncode == 0, run.stderr + agent.log_tail()
    result: dict[str, Any] = json.loads(out.read_text())
    return result
