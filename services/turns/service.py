"""The bus adapter of the turns service: messages in, effects out, nothing else.

All decisions live in ``services.turns.conversation``; this module feeds it bus
messages with a monotonic ``now``, publishes what it returns and keeps the
metrics. Each input channel has its own subscription so playout and VAD never
wait behind transcripts or tokens; the subscriptions are per session, made only
for the sessions the edge assigned to this replica (services.common.assignment).
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

from proto.messages import AgentState, Handover, LlmRequest
from proto.subjects import LLM_STREAM, PLAYOUT, SESSION, TRANSCRIPT, VAD
from services.common import metrics, telemetry
from services.common.assignment import AssignedSessions, Route
from services.common.bus import Bus, Handler
from services.common.probes import Readiness
from services.common.runner import Graceful, Stop, main
from services.turns.config import Settings
from services.turns.conversation import Drop, Effect, Publish, TurnClosed
from services.turns.handover import HandoverConversations
from services.turns.metrics import LLM_REQUESTS, TURNS, TURNS_INTERRUPTED

SERVICE = "turns"
TICK_SECONDS = 0.5  # resolution of the reply timeout and idle-session expiry

log = logging.getLogger(__name__)

Step = Callable[[Any, float], list[Effect]]


class Adapter:
    """Runs the conversation logic against one Bus."""

    def __init__(self, bus: Bus, conversations: HandoverConversations) -> None:
        self._bus = bus
        self._conversations = conversations
        self._states: dict[str, str] = {}  # the agent state last published, per session

    def handler(self, step: Step) -> Handler:
        async def handle(message: Any, _subject: str) -> None:
            await self.apply(step(message, time.monotonic()))

        return handle

    async def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Publish):
                if isinstance(effect.message, AgentState):
                    self._states[effect.message.session_id] = effect.message.state
                await self._bus.publish(effect.channel, effect.message)
                if isinstance(effect.message, LlmRequest):
                    LLM_REQUESTS.labels(SERVICE, str(effect.message.speculative).lower()).inc()
            elif isinstance(effect, Drop):
                self._bus.count_drop(effect.channel, effect.reason)
            else:
                _record_turn(effect)
        metrics.ACTIVE_SESSIONS.labels(SERVICE).set(len(self._conversations))

    # --- session assignment (services.common.assignment.SessionState) -------

    def acquired(self, session_id: str, handover: Handover | None) -> None:
        # Without a handover the session starts here (SessionStarted greets) or its
        # previous owner died: it is created by its first message, with no history.
        if handover is not None:
            self._conversations.adopt(session_id, handover.history, time.monotonic())
        metrics.ACTIVE_SESSIONS.labels(SERVICE).set(len(self._conversations))

    def released(self, session_id: str) -> Handover:
        history = self._conversations.release(session_id)
        self._states.pop(session_id, None)
        self._bus.forget_session(session_id)
        metrics.ACTIVE_SESSIONS.labels(SERVICE).set(len(self._conversations))
        return Handover(history=history)

    def idle(self, session_id: str) -> bool:
        # No reply thinking or speaking: the conversation may move between turns.
        return self._states.get(session_id, "listening") == "listening"

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
        "session %s turn %d %s after %.2fs: heard %s of %s",
        closed.session_id,
        closed.turn_id,
        closed.outcome.value,
        closed.seconds,
        # The words only with VOICE_AGENT_TRACE_TEXT, as in spans: they are the user's data.
        telemetry.loggable_text(closed.heard_text, limit=500),
        telemetry.loggable_text(closed.generated_text, limit=500),
    )


async def start(
    bus: Bus, readiness: Readiness, settings: Settings | None = None, *, replica_id: str | None = None
) -> Stop:
    conversations = HandoverConversations((settings or Settings.from_env()).conversation())
    adapter = Adapter(bus, conversations)
    routes = [
        Route(SESSION, adapter.handler(conversations.on_session)),
        Route(VAD, adapter.handler(conversations.on_vad)),
        Route(TRANSCRIPT, adapter.handler(conversations.on_transcript)),
        Route(LLM_STREAM, adapter.handler(conversations.on_llm)),
        Route(PLAYOUT, adapter.handler(conversations.on_playout)),
    ]
    assignment = AssignedSessions(bus, SERVICE, routes, adapter, replica_id=replica_id)
    await assignment.start()
    ticker = asyncio.create_task(adapter.tick_forever(), name="turns-tick")
    readiness.checks.append(lambda: not ticker.done())
    metrics.ACTIVE_SESSIONS.labels(SERVICE).set(0)

    async def stop() -> None:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await assignment.stop()

    # Draining: each conversation goes back to the edge, with its history, between replies.
    return Graceful(stop, assignment.drain)


def run() -> None:
    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        errors = "; ".join(f"TURNS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        print(f"{SERVICE}: error: {errors}", file=sys.stderr)
        raise SystemExit(2) from None
    main(SERVICE, settings, start)
