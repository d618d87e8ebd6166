"""Session assignment on a replica of stt or turns: the thin NATS side of Ownership.

The replica answers the edge on two subjects (proto.subjects): ``va.assign.<service>``
through the queue group <service> (whichever replica NATS picks) and its own
``va.lease.<service>.<replica>`` (the edge assigns to this replica, renews, revokes).
It subscribes to a session's per-session subjects only while it owns the session,
so the other replicas never receive them, and it announces its load on
``va.replicas`` so edges give new sessions to the least loaded replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from nats.aio.subscription import Subscription
from prometheus_client import Counter, Gauge

from proto.messages import (
    AssignReply,
    AssignRequest,
    Handover,
    LeaseRenew,
    LeaseReply,
    LeaseRevoke,
    ReplicaStatus,
    SessionEnded,
)
from proto.subjects import ASSIGN, LEASE, REPLICAS, Channel
from services.common import replica
from services.common.bus import Bus, Handler
from services.common.metrics import PREFIX
from services.common.ownership import LeaseStatus, Ownership

log = logging.getLogger(__name__)

LEASE_S = 5.0  # the edge renews every second: a lease five renewals late is over
TICK_S = 0.5  # lease expiry and the load announcement
# Draining: every session is given back by this long before the grace ends, so the
# edge (renewing each second) has time to hand it to another replica.
RELEASE_BEFORE_S = 3.0

ASSIGNED = Counter(f"{PREFIX}_sessions_assigned", "Sessions this replica took on", ["service", "handover"])
RELEASED = Counter(
    f"{PREFIX}_sessions_released",
    "Sessions that left this replica: ended, drained (given back), revoked, expired",
    ["service", "reason"],
)
OWNED = Gauge(f"{PREFIX}_sessions_owned", "Sessions this replica owns", ["service"])

_WIRE: dict[LeaseStatus, Literal["held", "released", "unknown"]] = {
    LeaseStatus.HELD: "held",
    LeaseStatus.RELEASED: "released",
    LeaseStatus.UNKNOWN: "unknown",
}


@dataclass(frozen=True)
class Route:
    """A per-session channel the owner reads, and its handler."""

    channel: Channel
    handler: Handler
    traced: bool = True


class SessionState(Protocol):
    """The service's side: what arrives with a session and what leaves with it."""

    def acquired(self, session_id: str, handover: Handover | None) -> None: ...

    def released(self, session_id: str) -> Handover | None: ...

    def idle(self, session_id: str) -> bool: ...


class AssignedSessions:
    def __init__(
        self,
        bus: Bus,
        service: str,
        routes: Sequence[Route],
        state: SessionState,
        *,
        replica_id: str | None = None,
        lease_s: float = LEASE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self.service = service
        self.replica_id = replica_id or replica.replica_id()
        self._routes = routes
        self._state = state
        self._ownership = Ownership(lease_s)
        self._clock = clock
        self._subs: dict[str, list[Subscription]] = {}
        self._lock = asyncio.Lock()  # subscribing and unsubscribing a session never interleave
        self._serving: list[Subscription] = []
        self._assign: Subscription | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._none_owned = asyncio.Event()  # draining waits on it
        self._none_owned.set()

    def owns(self, session_id: str) -> bool:
        return session_id in self._ownership

    def __len__(self) -> int:
        return len(self._ownership)

    async def start(self) -> None:
        lease = await self._bus.serve(LEASE, LEASE.subject(self.service, self.replica_id), self._on_request)
        self._assign = await self._bus.serve(
            ASSIGN, ASSIGN.subject(self.service), self._on_request, queue=self.service
        )
        self._serving = [lease, self._assign]
        await self._bus.flush()  # in place on the server before edges hear of this replica
        self._ticker = asyncio.create_task(self._tick_forever(), name=f"{self.service}-assignment")
        OWNED.labels(self.service).set(0)
        await self._announce()

    async def drain(self, deadline: float) -> None:
        """Take no new session; give each owned one back to the edge at its next
        renewal once idle (all by ``deadline`` - RELEASE_BEFORE_S); return when none
        is left or at ``deadline`` (time.monotonic)."""
        if self._assign is not None:
            await _quietly(self._assign.unsubscribe())  # new sessions go to the other replicas
        self._ownership.drain(release_by=max(self._clock(), deadline - RELEASE_BEFORE_S))
        await self._announce()  # edges stop picking this replica at once
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_owned.wait(), max(0.0, deadline - self._clock()))
        log.info("%s drained: %d session(s) still owned", self.replica_id, len(self._ownership))

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for subscription in self._serving:
            await _quietly(subscription.unsubscribe())
        for session_id in list(self._subs):
            await self._unsubscribe(session_id)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- requests from the edge ---------------------------------------------

    async def _on_request(self, request: Any) -> AssignReply | LeaseReply:
        if isinstance(request, AssignRequest):
            return await self._on_assign(request)
        if isinstance(request, LeaseRenew):
            return self._on_renew(request)
        assert isinstance(request, LeaseRevoke)
        known = request.session_id in self._ownership
        if known:
            self._release(request.session_id, "revoked")
        return _lease_reply(request.session_id, LeaseStatus.RELEASED if known else LeaseStatus.UNKNOWN)

    async def _on_assign(self, request: AssignRequest) -> AssignReply:
        session_id = request.session_id
        new = session_id not in self._ownership
        accepted = self._ownership.claim(session_id, self._clock())
        if accepted and new:
            # State first, then the subscriptions: the first message finds the handed-over state.
            self._state.acquired(session_id, request.handover)
            await self._subscribe(session_id)
            ASSIGNED.labels(self.service, str(request.handover is not None).lower()).inc()
            self._counted()
            log.info("session %s assigned here (%d owned)", session_id, len(self._ownership))
        return AssignReply(
            session_id=session_id, turn_id=0, seq=0, replica=self.replica_id, accepted=accepted
        )

    def _on_renew(self, request: LeaseRenew) -> LeaseReply:
        session_id = request.session_id
        status = self._ownership.renew(session_id, self._clock(), idle=self._state.idle(session_id))
        handover = self._release(session_id, "drained") if status is LeaseStatus.RELEASED else None
        return _lease_reply(session_id, status, handover)

    # --- per-session subscriptions ------------------------------------------

    async def _subscribe(self, session_id: str) -> None:
        async with self._lock:
            if session_id in self._subs or session_id not in self._ownership:
                return
            self._subs[session_id] = [
                await self._bus.subscribe(
                    r.channel, self._guarded(r.handler), session_id=session_id, traced=r.traced
                )
                for r in self._routes
            ]
        await self._bus.flush()  # the server has them before the edge hears "assigned"

    async def _unsubscribe(self, session_id: str) -> None:
        async with self._lock:
            for subscription in self._subs.pop(session_id, []):
                await _quietly(subscription.unsubscribe())

    def _guarded(self, handler: Handler) -> Handler:
        async def handle(message: Any, subject: str) -> None:
            session_id = message.session_id
            if session_id not in self._ownership:
                return  # given away while this was queued: the new owner has it
            await handler(message, subject)
            if isinstance(message, SessionEnded):
                self._release(session_id, "ended")

        return handle

    def _release(self, session_id: str, reason: str) -> Handover | None:
        """The session leaves this replica now: its state, then (in a task: we may be
        inside one of its subscription's callbacks) its subscriptions."""
        self._ownership.drop(session_id)
        handover = self._state.released(session_id)
        RELEASED.labels(self.service, reason).inc()
        self._counted()
        self._spawn(self._unsubscribe(session_id))
        log.info("session %s left this replica (%s)", session_id, reason)
        return handover

    def _counted(self) -> None:
        OWNED.labels(self.service).set(len(self._ownership))
        if len(self._ownership):
            self._none_owned.clear()
        else:
            self._none_owned.set()

    # --- time ---------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                for session_id in self._ownership.expire(self._clock()):
                    self._release(session_id, "expired")
                await self._announce()
            except Exception:  # a failed tick must not end expiry for good
                log.exception("assignment tick failed")

    async def _announce(self) -> None:
        status = ReplicaStatus(
            service=self.service,
            replica=self.replica_id,
            sessions=len(self._ownership),
            draining=self._ownership.draining,
            sent_at=time.time(),
        )
        await self._bus.publish(REPLICAS, status, traced=False)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _lease_reply(session_id: str, status: LeaseStatus, handover: Handover | None = None) -> LeaseReply:
    return LeaseReply(session_id=session_id, turn_id=0, seq=0, status=_WIRE[status], handover=handover)


async def _quietly(coro: Coroutine[Any, Any, Any]) -> None:
    """Unsubscribing fails once the connection is closing or the subscription is gone."""
    with contextlib.suppress(Exception):
        await coro
