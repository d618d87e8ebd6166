"""The edge service running in-process against a test's nats-server, on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from proto import messages as m
from proto import subjects as s
from services.common.bus import Bus
from services.common.probes import Readiness, add_probe_routes, start_http
from services.common.runner import Stop
from services.edge.config import Settings
from services.edge.service import EdgeService
from tests.support import free_port


@dataclass
class RunningEdge:
    service: EdgeService
    port: int
    readiness: Readiness
    stop: Stop  # a runner Graceful: it can drain first

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> int:
        manager = self.service.manager
        return len(manager.sessions) if manager is not None else 0


@contextlib.asynccontextmanager
async def run_edge(
    nats_url: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None = None
) -> AsyncIterator[RunningEdge]:
    """The running edge with its readiness and stop handle; ``env`` adds EDGE_ settings."""
    port = free_port()
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("EDGE_HTTP_PORT", str(port))
    monkeypatch.setenv("EDGE_ICE_HOST_ADDRESSES", "127.0.0.1")
    settings = Settings.from_env()
    service = EdgeService(settings)
    readiness = Readiness()
    app = web.Application()
    add_probe_routes(app, readiness)
    service.add_routes(app)
    bus = await Bus.connect(settings.nats_url, "edge")
    http = await start_http(app, settings.http_host, settings.http_port)
    stop = await service.start(bus, readiness)
    readiness.ready = True
    try:
        yield RunningEdge(service, port, readiness, stop)
    finally:
        await stop()
        await bus.close()
        await http.cleanup()


@contextlib.asynccontextmanager
async def serve_edge(
    nats_url: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[EdgeService, int]]:
    """Yields the running service and its HTTP port; ``env`` adds EDGE_ settings."""
    async with run_edge(nats_url, monkeypatch, env) as edge:
        yield edge.service, edge.port


TONE_RATE = 22050
PIECE = TONE_RATE // 5  # 200 ms pieces, as tts sends


class Peers:
    """The rest of the agent, as far as the edge can tell: watches and publishes."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.seen: list[tuple[float, Any]] = []

    @classmethod
    async def connect(cls, url: str) -> Peers:
        peers = cls(await Bus.connect(url, "test"))
        for channel in (s.SESSION, s.VAD, s.AUDIO_IN, s.PLAYOUT, s.STATE, s.CONTROL):
            await peers.bus.subscribe(channel, peers._record, traced=False)
        return peers

    async def _record(self, message: Any, _subject: str) -> None:
        self.seen.append((time.time(), message))

    def all(self, kind: type, where: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        return [msg for _, msg in self.seen if isinstance(msg, kind) and where(msg)]

    def when(self, message: Any) -> float:
        return next(t for t, msg in self.seen if msg is message)

    async def wait_for(
        self, kind: type, within: float = 10.0, where: Callable[[Any], bool] = lambda _: True
    ) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.all(kind, where)
            if found:
                return found[0]
            await asyncio.sleep(0.01)
        raise TimeoutError(
            f"no {kind.__name__} in {within}s; saw {[type(x).__name__ for _, x in self.seen[-20:]]}"
        )

    async def say_audio(
        self, session: str, turn: int, seconds: float, text: str, freq: float = 440.0
    ) -> float:
        """Publish a tone as tts would (200 ms AudioChunks); returns when publishing began."""
        t = np.arange(int(TONE_RATE * seconds)) / TONE_RATE
        signal = (np.sin(2 * np.pi * freq * t) * 12000).astype(np.int16)
        began = time.time()
        for part, start in enumerate(range(0, signal.size, PIECE)):
            last = start + PIECE >= signal.size
            chunk = m.AudioChunk(
                session_id=session, turn_id=turn, seq=self.bus.next_seq(session), chunk_index=0, part=part,
                pcm=signal[start : start + PIECE].tobytes(), sample_rate=TONE_RATE,
                text=text if part == 0 else "", final_part=last, last_chunk=last,
            )  # fmt: skip
            await self.bus.publish(s.AUDIO_OUT, chunk, traced=False)
        return began
