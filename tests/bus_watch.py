"""A Bus on a running stack's NATS that records what the services say to each other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from proto import messages as m
from proto import subjects as s
from services.common.bus import Bus


class BusWatch:
    """Everything the services say about one session, with arrival times."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.seen: list[tuple[float, Any]] = []

    @classmethod
    async def connect(cls, url: str) -> BusWatch:
        watch = cls(await Bus.connect(url, "e2e-watch"))
        for channel in (s.VAD, s.CONTROL, s.TRANSCRIPT, s.PLAYOUT, s.AUDIO_OUT, s.LLM_REQUEST, s.LLM_STREAM):
            # queue="": a plain subscription, never a member of the llm's queue group.
            await watch.bus.subscribe(channel, watch._record, queue="", traced=False)
        await watch.bus.flush()
        return watch

    async def _record(self, message: Any, _subject: str) -> None:
        self.seen.append((time.time(), message))

    def all(self, kind: type, session: str, where: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        return [x for _, x in self.seen if isinstance(x, kind) and x.session_id == session and where(x)]

    def timeline(self, session: str) -> list[tuple[str, int]]:
        """What happened, for a failure message (audio left out)."""
        return [
            (type(x).__name__, x.turn_id)
            for _, x in self.seen
            if x.session_id == session and not isinstance(x, m.AudioChunk)
        ]

    def when(self, message: Any) -> float:
        return next(t for t, x in self.seen if x is message)

    async def wait_for(
        self, kind: type, session: str, within: float, where: Callable[[Any], bool] = lambda _: True
    ) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.all(kind, session, where)
            if found:
                return found[0]
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no {kind.__name__} in {within}s")
