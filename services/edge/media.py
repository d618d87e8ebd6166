"""The two audio directions of a session, as aiortc sees them.

``PlayoutTrack`` is the outbound MediaStreamTrack: every 20 ms, paced on the
wall clock, it takes one frame from the playout buffer, through the barge-in
controller whose pause timeout runs on these pulls (silence when nothing
plays), and hands it to aiortc's Opus encoder. ``read_microphone`` is the inbound
loop: decoded frames -> 16 kHz mono 20 ms frames -> VAD -> the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from services.edge.audio import IN_FRAME, IN_RATE, OUT_FRAME, OUT_RATE, InboundResampler, stereo_frame
from services.edge.barge_in import BargeIn, OutEvent
from services.edge.vad import VadStream

FRAME_SECONDS = OUT_FRAME / OUT_RATE
# Behind by more than this (a stalled loop), the track skips ahead instead of
# bursting frames, which would only overflow the receiver's jitter buffer.
MAX_LAG = 0.1

OnPlayout = Callable[[list[OutEvent], float], Awaitable[None]]
OnFrame = Callable[[bytes, float, float], Awaitable[None]]  # pcm, VAD probability, captured_at


class PlayoutTrack(MediaStreamTrack):
    """48 kHz stereo s16 frames of 20 ms from a session's playout, in real time."""

    kind = "audio"

    def __init__(self, source: BargeIn, on_events: OnPlayout) -> None:
        super().__init__()
        self.source = source
        self._on_events = on_events
        self._start: float | None = None
        self._index = 0  # frames since start; pts = index * 960

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pace()
        now = time.time()
        mono, events = self.source.next_frame(now)
        frame = stereo_frame(mono, self._index * OUT_FRAME)
        if events:
            await self._on_events(events, now)
        return frame

    async def _pace(self) -> None:
        if self._start is None:
            self._start = time.time()
            return
        self._index += 1
        wait = self._start + self._index * FRAME_SECONDS - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -MAX_LAG:
            # Skip the lost time in pts too, so RTP timestamps keep wall-clock spacing.
            self._index += int(-wait / FRAME_SECONDS)


async def read_microphone(track: MediaStreamTrack, vad: VadStream, on_frame: OnFrame) -> None:
    """Run until the remote track ends; each 20 ms frame and its VAD probability
    go to ``on_frame`` (endpointing and barge-in)."""
    resampler = InboundResampler()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        arrived = time.time()
        if not isinstance(frame, av.AudioFrame):
            continue
        pieces = resampler.frames(frame)
        for i, pcm in enumerate(pieces):
            # Pieces of one decoded frame arrive together: date each by its place.
            captured_at = arrived - (len(pieces) - i) * IN_FRAME / IN_RATE
            await on_frame(pcm.tobytes(), vad.push(pcm), captured_at)
