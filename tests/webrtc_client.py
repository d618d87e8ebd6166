"""A Python WebRTC client of the edge for tests, built on aiortc.

It does what the page does: creates the ``events`` data channel, offers the
microphone, POSTs ``/offer``. The "microphone" plays queued 16 kHz PCM16 in real
time (48 kHz stereo, as a browser sends) and silence in between; the remote
audio is recorded as 48 kHz mono with arrival times; the events are collected.

Loopback-only hosts: call ``services.edge.ice.use_host_addresses(["127.0.0.1"])``
first (the edge does the same with ``EDGE_ICE_HOST_ADDRESSES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from services.edge.audio import OUT_FRAME, OUT_RATE, ChunkResampler, stereo_frame
from services.edge.ice import rtc_configuration

FRAME_SECONDS = OUT_FRAME / OUT_RATE
Pcm = npt.NDArray[np.int16]


class EdgeRefused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"edge answered {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Spoken:
    """When a queued utterance's first and last samples were sent."""

    samples: int
    started_at: float | None = None
    ended_at: float | None = None
    sent: asyncio.Event = field(default_factory=asyncio.Event)  # set with ended_at


class SpeechTrack(MediaStreamTrack):
    """A fake microphone: queued utterances in real time, then silence."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[Pcm, Spoken]] = deque()
        self._offset = 0
        self._start: float | None = None
        self._index = 0

    def say(self, pcm16_16k: Pcm) -> Spoken:
        samples = ChunkResampler()(pcm16_16k.astype(np.int16).tobytes(), 16000, True)
        spoken = Spoken(samples.size)
        self._queue.append((samples, spoken))
        return spoken

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._index += 1
            await asyncio.sleep(max(0.0, self._start + self._index * FRAME_SECONDS - time.time()))
        return stereo_frame(self._next_samples(time.time()), self._index * OUT_FRAME)

    def _next_samples(self, now: float) -> Pcm:
        out = np.zeros(OUT_FRAME, dtype=np.int16)
        filled = 0
        while self._queue and filled < OUT_FRAME:
            samples, spoken = self._queue[0]
            if self._offset == 0:
                spoken.started_at = now + filled / OUT_RATE
            take = min(OUT_FRAME - filled, samples.size - self._offset)
            out[filled : filled + take] = samples[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset >= samples.size:
                spoken.ended_at = now + filled / OUT_RATE
                spoken.sent.set()
                self._queue.popleft()
                self._offset = 0
        return out


class EdgeClient:
    """One call to an edge at ``base_url`` (``http://host:port``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.mic = SpeechTrack()
        self.pc = RTCPeerConnection(rtc_configuration())
        self.channel = self.pc.createDataChannel("events")
        self.channel.on("message", self._on_message)
        self.events: list[dict[str, Any]] = []
        self.received: list[tuple[float, Pcm]] = []  # (arrival time, 20 ms of 48 kHz mono)
        self.connect_seconds = 0.0
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def connect(self, within: float = 15.0) -> None:
        self.pc.addTrack(self.mic)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        started = time.perf_counter()
        offer = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
        async with aiohttp.ClientSession() as http, http.post(f"{self.base_url}/offer", json=offer) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise EdgeRefused(resp.status, body)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        await asyncio.wait_for(self._connected.wait(), within)
        self.connect_seconds = time.perf_counter() - started

    def say(self, pcm16_16k: Pcm) -> Spoken:
        return self.mic.say(pcm16_16k)

    async def wait_for_event(
        self,
        kind: str,
        within: float = 10.0,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event in self.events:
                if event["type"] == kind and where(event):
                    return event
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no {kind!r} event in {within}s; got {[e['type'] for e in self.events]}")

    def first_sound_after(self, t: float, rms: float = 300.0) -> float | None:
        """Arrival time of the first received frame after ``t`` louder than ``rms``."""
        for arrived, samples in self.received:
            if arrived >= t and _rms(samples) > rms:
                return arrived
        return None

    def last_sound(self, rms: float = 300.0) -> float | None:
        loud = [arrived for arrived, samples in self.received if _rms(samples) > rms]
        return loud[-1] if loud else None

    def audio_between(self, start: float, end: float = float("inf")) -> Pcm:
        parts = [samples for arrived, samples in self.received if start <= arrived < end]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.mic.stop()
        await self.pc.close()

    def _on_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        event["received_at"] = time.time()
        self.events.append(event)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.get_running_loop().create_task(self._record(track)))

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()

    async def _record(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                arrived = time.time()
                assert isinstance(frame, av.AudioFrame)
                data = frame.to_ndarray().reshape(-1)
                channels = len(frame.layout.channels)
                self.received.append((arrived, data.reshape(-1, channels)[:, 0].astype(np.int16)))


def _rms(samples: Pcm) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0
