"""Helpers for tests: free ports, the real nats-server, LibriVox speech."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.bus import Bus
from services.edge.lease_keeper import LeaseKeeper
from stack.process_group import nats_server_binary

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class NatsServer:
    """A real nats-server on a free loopback port, stopped by PID."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NatsServer:
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@dataclass(frozen=True)
class Utterance:
    name: str
    path: Path
    text: str

    def pcm16(self) -> np.ndarray:
        """The utterance as int16 mono samples at 16 kHz."""
        with wave.open(str(self.path)) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def librivox_utterances() -> list[Utterance]:
    transcripts: dict[str, str] = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        match = re.match(r"<s>\s*(.*?)\s*</s>\s*\((.+)\)", line)
        if match:
            transcripts[match.group(2)] = match.group(1)
    return [
        Utterance(name, LIBRIVOX / f"{name}.wav", text)
        for name, text in sorted(transcripts.items())
        if (LIBRIVOX / f"{name}.wav").exists()
    ]


def normalize_words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalize_words(reference), normalize_words(hypothesis) or "<empty>"))


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text exposition (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def speech_bounds(pcm: np.ndarray, ratio: float = 0.15) -> tuple[int, int]:
    """First and last sample (exclusive) of the 20 ms frames louder than ``ratio``
    of the loudest one: the speech in a recording, without its silent margins."""
    frames = pcm[: pcm.size // 320 * 320].reshape(-1, 320).astype(np.float64)
    rms = np.sqrt((frames**2).mean(axis=1))
    loud = np.flatnonzero(rms > ratio * rms.max())
    return int(loud[0]) * 320, (int(loud[-1]) + 1) * 320


def joined_with_pause(first: np.ndarray, second: np.ndarray, pause_s: float) -> np.ndarray:
    """``first`` then ``second``, their silent margins replaced by ``pause_s`` of silence
    (and 300 ms kept before and after, as a speaker would leave)."""
    margin = 16000 * 3 // 10
    start, end = speech_bounds(first)
    next_start, next_end = speech_bounds(second)
    pause = np.zeros(int(16000 * pause_s), dtype=np.int16)
    return np.concatenate(
        [first[max(0, start - margin) : end], pause, second[next_start : next_end + margin]]
    ).astype(np.int16)


async def claim(bus: Bus, service: str, session_id: str) -> LeaseKeeper:
    """Assign ``session_id`` to a replica of ``service`` and keep its lease, as the edge
    does, for tests that play the edge (stt and turns handle only sessions they own).
    Returns the running LeaseKeeper: ``close(session_id)`` then ``stop()`` when done."""
    keeper = LeaseKeeper(bus, (service,))
    await keeper.start()
    await keeper.open(session_id)
    assert keeper.owner(service, session_id), f"no {service} replica took session {session_id}"
    return keeper
