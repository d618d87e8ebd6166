"""The sessions of this replica: admission, creation from an offer, shutdown."""

from __future__ import annotations

import asyncio
import logging
import secrets

from services.common.bus import Bus
from services.common.metrics import ACTIVE_SESSIONS
from services.edge.config import Settings
from services.edge.metrics import OFFERS_ACCEPTED, SERVICE
from services.edge.offer import OfferError
from services.edge.session import EdgeSession
from services.edge.vad import SileroModel

log = logging.getLogger(__name__)


class SessionManager:
    """Creates an EdgeSession per accepted offer, up to ``max_sessions``."""

    def __init__(self, bus: Bus, vad: SileroModel, settings: Settings) -> None:
        self.bus = bus
        self.vad = vad
        self.settings = settings
        self.sessions: dict[str, EdgeSession] = {}

    async def answer(self, offer_sdp: str) -> str:
        """The answer SDP (ICE gathered) for an offer, or OfferError."""
        if len(self.sessions) >= self.settings.max_sessions:
            raise OfferError(503, "full", f"all {self.settings.max_sessions} sessions are in use")
        session_id = secrets.token_hex(8)
        session = EdgeSession(session_id, self.bus, self.vad, self.settings, self._forget)
        # Counted before the first await, so concurrent offers cannot overshoot the limit.
        self.sessions[session_id] = session
        ACTIVE_SESSIONS.labels(SERVICE).set(len(self.sessions))
        try:
            answer = await session.accept(offer_sdp)
        except BaseException:  # a bad SDP, a client gone mid-offer, a bus failure
            await asyncio.shield(session.close("rejected"))
            raise
        OFFERS_ACCEPTED.inc()
        log.info("session %s answered (%d active)", session_id, len(self.sessions))
        return answer

    def _forget(self, session: EdgeSession) -> None:
        self.sessions.pop(session.id, None)
        ACTIVE_SESSIONS.labels(SERVICE).set(len(self.sessions))

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close("shutdown") for s in list(self.sessions.values())))
