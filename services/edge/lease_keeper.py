"""The edge's side of session assignment on the bus: a thin adapter over Leases.

It listens to the replicas' heartbeats (``va.replicas``), sends each due request
(``va.assign.<service>`` through the queue group, or ``va.lease.<service>.<replica>``)
in a task of its own, and feeds the answers back to Leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.subscription import Subscription
from prometheus_client import Counter

from proto.messages import AssignReply, AssignRequest, LeaseRenew, LeaseReply, LeaseRevoke, ReplicaStatus
from proto.subjects import ASSIGN, ASSIGNED_SERVICES, LEASE, REPLICAS
from services.common.bus import Bus
from services.common.metrics import PREFIX
from services.edge.leases import Action, Assign, Leases, Renew, Renewal, Revoke
from services.edge.replicas import ReplicaTable

log = logging.getLogger(__name__)

TICK_S = 0.1
REQUEST_TIMEOUT_S = 1.0
OPEN_WAIT_S = 1.0  # an offer waits at most this long for its owners (SessionStarted comes later)

REASSIGNED = Counter(
    f"{PREFIX}_edge_session_reassignments",
    "Sessions whose owner changed: released (draining), unknown, gone (no responders), timeout",
    ["service", "reason"],
)
UNASSIGNED = Counter(
    f"{PREFIX}_edge_assignments_unanswered",
    "Assignment requests no replica took (none running, or all draining)",
    ["service"],
)


class LeaseKeeper:
    def __init__(
        self,
        bus: Bus,
        services: Sequence[str] = ASSIGNED_SERVICES,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._table = ReplicaTable()
        self._leases = Leases(services, self._table)
        self._timeout_s = timeout_s
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._heartbeats: Subscription | None = None

    def owner(self, service: str, session_id: str) -> str | None:
        return self._leases.owner(service, session_id)

    async def start(self) -> None:
        self._heartbeats = await self._bus.subscribe(REPLICAS, self._on_status, traced=False)
        await self._bus.flush()  # hears the heartbeats from now on
        self._ticker = asyncio.create_task(self._tick_forever(), name="edge-leases")

    async def open(self, session_id: str) -> None:
        """Find the session's owners (waits at most OPEN_WAIT_S; the rest retries on its own)."""
        tasks = [self._spawn(action) for action in self._leases.open(session_id, self._clock())]
        if tasks:
            await asyncio.wait(tasks, timeout=OPEN_WAIT_S)

    def close(self, session_id: str) -> None:
        for action in self._leases.close(session_id):
            self._spawn(action)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._heartbeats is not None:
            with contextlib.suppress(Exception):  # the connection may be closing
                await self._heartbeats.unsubscribe()
        if self._tasks:  # the last revokes
            await asyncio.wait(set(self._tasks), timeout=self._timeout_s)
        for task in list(self._tasks):
            task.cancel()

    async def _on_status(self, message: Any, _subject: str) -> None:
        if isinstance(message, ReplicaStatus):
            self._table.seen(message, self._clock())

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for action in self._leases.due(self._clock()):
                self._spawn(action)

    def _spawn(self, action: Action) -> asyncio.Task[None]:
        task = asyncio.create_task(self._run(action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, action: Action) -> None:
        try:
            follow = await self._send(action)
        except Exception:  # a bug here must not stop the leases of every session
            log.exception("lease request %s failed", action)
            return
        for next_action in follow:
            self._spawn(next_action)

    async def _send(self, action: Action) -> list[Action]:
        if isinstance(action, Assign):
            return await self._assign(action)
        if isinstance(action, Renew):
            return await self._renew(action)
        await self._revoke(action)
        return []

    async def _assign(self, action: Assign) -> list[Action]:
        request = AssignRequest(session_id=action.session_id, turn_id=0, seq=0, handover=action.handover)
        if action.target is None:
            endpoint, subject = ASSIGN, ASSIGN.subject(action.service)
        else:
            endpoint, subject = LEASE, LEASE.subject(action.service, action.target)
        try:
            reply = await self._bus.request(endpoint, subject, request, within=self._timeout_s)
        except TimeoutError:
            reply = None
        owner = reply.replica if isinstance(reply, AssignReply) and reply.accepted else None
        if owner is None and action.target is None:
            UNASSIGNED.labels(action.service).inc()
        elif owner is not None:
            log.info("session %s: %s on %s", action.session_id, action.service, owner)
        return self._leases.assigned(action, owner, self._clock())

    async def _renew(self, action: Renew) -> list[Action]:
        request = LeaseRenew(session_id=action.session_id, turn_id=0, seq=0)
        subject = LEASE.subject(action.service, action.owner)
        handover = None
        try:
            reply = await self._bus.request(LEASE, subject, request, within=self._timeout_s)
            outcome, handover = _renewal(reply)
        except TimeoutError:
            outcome = Renewal.TIMEOUT
        follow = self._leases.renewed(action, outcome, self._clock(), handover)
        timed_out = any(isinstance(a, Revoke) for a in follow)  # too many misses: given up on
        if outcome in (Renewal.RELEASED, Renewal.UNKNOWN, Renewal.GONE) or timed_out:
            REASSIGNED.labels(action.service, outcome.value).inc()
            log.info(
                "session %s: %s on %s %s", action.session_id, action.service, action.owner, outcome.value
            )
        return follow

    async def _revoke(self, action: Revoke) -> None:
        request = LeaseRevoke(session_id=action.session_id, turn_id=0, seq=0)
        with contextlib.suppress(TimeoutError):  # a dead replica cannot answer: nothing to undo
            await self._bus.request(
                LEASE, LEASE.subject(action.service, action.owner), request, self._timeout_s
            )


def _renewal(reply: Any) -> tuple[Renewal, Any]:
    if reply is None:
        return Renewal.GONE, None
    if isinstance(reply, LeaseReply):
        return Renewal(reply.status), reply.handover
    return Renewal.UNKNOWN, None  # an AssignReply to a renewal: not ours to interpret
