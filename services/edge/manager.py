"""The sessions of this replica: admission, creation from an offer, their owners
among the stt and turns replicas (LeaseKeeper), draining and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from services.common.bus import Bus
from services.common.metrics import ACTIVE_SESSIONS
from services.edge.config import Settings
from services.edge.lease_keeper import LeaseKeeper
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
        self.leases = LeaseKeeper(bus)
        self._none_left = asyncio.Event()  # set while no call is in progress (draining waits on it)
        self._none_left.set()

    async def start(self) -> None:
        await self.leases.start()

    async def answer(self, offer_sdp: str) -> str:
        """The answer SDP (ICE gathered) for an offer, or OfferError."""
        if len(self.sessions) >= self.settings.max_sessions:
            raise OfferError(503, "full", f"all {self.settings.max_sessions} sessions are in use")
        session_id = secrets.token_hex(8)
        session = EdgeSession(session_id, self.bus, self.vad, self.settings, self._forget)
        # Counted before the first await, so concurrent offers cannot overshoot the limit.
        self.sessions[session_id] = session
        self._none_left.clear()
        ACTIVE_SESSIONS.labels(SERVICE).set(len(self.sessions))
        try:
            # Owners first: SessionStarted (sent once connected) must find them listening.
            await self.leases.open(session_id)
            answer = await session.accept(offer_sdp)
        except BaseException:  # a bad SDP, a client gone mid-offer, a bus failure
            await asyncio.shield(session.close("rejected"))
            raise
        OFFERS_ACCEPTED.inc()
        log.info("session %s answered (%d active)", session_id, len(self.sessions))
        return answer

    def _forget(self, session: EdgeSession) -> None:
        self.sessions.pop(session.id, None)
        self.leases.close(session.id)
        if not self.sessions:
            self._none_left.set()
        ACTIVE_SESSIONS.labels(SERVICE).set(len(self.sessions))

    async def drain(self, deadline: float) -> None:
        """Live calls go on until they end or ``deadline`` (time.monotonic) passes."""
        log.info("draining: %d call(s) in progress", len(self.sessions))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_left.wait(), max(0.0, deadline - time.monotonic()))

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close("shutdown") for s in list(self.sessions.values())))
        await self.leases.stop()
