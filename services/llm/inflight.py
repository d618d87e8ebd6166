"""What a draining llm replica waits for: the replies it has accepted and not ended."""

from __future__ import annotations

import msgspec

from proto.messages import LlmDone
from proto.subjects import Channel
from services.common.inflight import InFlight
from services.llm.replies import Publisher

Key = tuple[str, int]  # (session, turn)


class NotingPublisher:
    """The bus as the Replier sees it: every reply ends with one LlmDone (finished,
    cancelled or failed), so publishing it takes the reply out of ``inflight``."""

    def __init__(self, bus: Publisher, inflight: InFlight[Key]) -> None:
        self._bus = bus
        self._inflight = inflight

    async def publish(self, channel: Channel, message: msgspec.Struct, *, traced: bool = True) -> None:
        try:
            await self._bus.publish(channel, message, traced=traced)
        finally:
            if isinstance(message, LlmDone):
                self._inflight.done((message.session_id, message.turn_id))

    def next_seq(self, session_id: str) -> int:
        return self._bus.next_seq(session_id)
