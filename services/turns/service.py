"""The bus adapter of the turns service: messages in, effects out, nothing else.

All decisions live in ``services.turns.conversation``; this module feeds it bus
messages with a monotonic ``now``, publishes what it returns and keeps the
metrics. Each input channel has its own subscription so playout and VAD never
wait behind transcripts or tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from proto.messages import LlmRequest
from proto.subjects import LLM_STREAM, PLAYOUT, SESSION, TRANSCRIPT, VAD
from services.common import metrics
from services.common.bus import Bus, Handler
from services.common.probes import Readiness
from services.common.runner import Stop, main
from services.turns.config import Settings
from services.turns.conversation import Conversations, Drop, Effect, Publish, TurnClosed
from services.turns.metrics import LLM_REQUESTS, TURNS, TURNS_INTERRUPTED

SERVICE = "turns"
TICK_SECONDS = 0.5  # resolution of the reply timeout and idle-session expiry

log = logging.getLogger(__name__)

Step = Callable[[Any, float], list[Effect]]


class Adapter:
    """Runs the conversation logic against one Bus."""

    def __init__(self, bus: Bus, conversations: Conversations) -> None:
        self._bus = bus
        self._conversations = conversations

    def handler(self, step: Step) -> Handler:
        async def handle(message: Any, _subject: str) -> None:
            await self.apply(step(message, time.monotonic()))

        return handle

    async def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Publish):
                await self._bus.publish(effect.channel, effect.message)
                if isinstance(effect.message, LlmRequest):
                    LLM_REQUESTS.labels(SERVICE, str(effect.message.speculative).lower()).inc()
            elif isinstance(effect, Drop):
                self._bus.count_drop(effect.channel, effect.reason)
            else:
                _record_turn(effect)
        metrics.ACTIVE_SESSIONS.labels(SERVICE).set(len(self._conversations))

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.apply(self._conversations.tick(time.monotonic()))
            except Exception:  # one bad tick must not stop the timeouts for good
                log.exception("tick failed")


def _record_turn(closed: TurnClosed) -> None:
    TURNS.labels(SERVICE, closed.outcome.value).inc()
    if closed.interrupted:
        TURNS_INTERRUPTED.labels(SERVICE).inc()
    log.info(
        "session %s turn %d %s after %.2fs: heard %r of %r",
        closed.session_id,
        closed.turn_id,
        closed.outcome.value,
        closed.seconds,
        closed.heard_text,
        closed.generated_text,
    )


async def start(bus: Bus, readiness: Readiness, settings: Settings | None = None) -> Stop:
    conversations = Conversations((settings or Settings.from_env()).conversation())
    adapter = Adapter(bus, conversations)
    subscriptions = [
        await bus.subscribe(SESSION, adapter.handler(conversations.on_session)),
        await bus.subscribe(VAD, adapter.handler(conversations.on_vad)),
        await bus.subscribe(TRANSCRIPT, adapter.handler(conversations.on_transcript)),
        await bus.subscribe(LLM_STREAM, adapter.handler(conversations.on_llm)),
        await bus.subscribe(PLAYOUT, adapter.handler(conversations.on_playout)),
    ]
    ticker = asyncio.create_task(adapter.tick_forever(), name="turns-tick")
    readiness.checks.append(lambda: not ticker.done())
    metrics.ACTIVE_SESSIONS.labels(SERVICE).set(0)

    async def stop() -> None:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        for subscription in subscriptions:
            with contextlib.suppress(Exception):  # the connection may be closing already
                await subscription.unsubscribe()

    return stop


def run() -> None:
    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        errors = "; ".join(f"TURNS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        print(f"{SERVICE}: error: {errors}", file=sys.stderr)
        raise SystemExit(2) from None
    main(SERVICE, settings, start)
