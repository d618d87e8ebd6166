"""Session assignment over a real nats-server: replicas of a stand-in service
(services.common.assignment) and the edge's LeaseKeeper, in process, no models.

Covers what the pure tests cannot: a session's messages reach its owner only,
a stopped owner is replaced, a draining one hands its state over, a closed
session is forgotten.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from proto import messages as m
from proto.subjects import SESSION, VAD
from services.common.assignment import AssignedSessions, Route
from services.common.bus import Bus
from services.edge.lease_keeper import LeaseKeeper
from tests.support import NatsServer

SERVICE = "standin"


class Replica:
    """A replica of the stand-in service: records what it owns and what it hears."""

    def __init__(self, bus: Bus, name: str) -> None:
        self.bus = bus
        self.name = name
        self.heard: list[Any] = []
        self.acquired: list[tuple[str, m.Handover | None]] = []
        self.released: list[str] = []
        self.busy: set[str] = set()
        routes = [Route(VAD, self._record), Route(SESSION, self._record)]
        self.assignment = AssignedSessions(bus, SERVICE, routes, State(self), replica_id=name)

    async def _record(self, message: Any, _subject: str) -> None:
        self.heard.append(message)

    def heard_from(self, session_id: str) -> list[Any]:
        return [msg for msg in self.heard if msg.session_id == session_id]

    async def close(self) -> None:
        await self.assignment.stop()
        await self.bus.close()


class State:
    """The stand-in's SessionState: hands over one line of "history"."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def acquired(self, session_id: str, handover: m.Handover | None) -> None:
        self._replica.acquired.append((session_id, handover))

    def released(self, session_id: str) -> m.Handover:
        self._replica.released.append(session_id)
        return m.Handover(history=[m.ChatMessage("user", f"said on {self._replica.name}")])

    def idle(self, session_id: str) -> bool:
        return session_id not in self._replica.busy


async def start_replica(url: str, name: str) -> Replica:
    replica = Replica(await Bus.connect(url, SERVICE), name)
    await replica.assignment.start()
    return replica


async def eventually(condition: Callable[[], bool], within: float = 6.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def edge(nats_server: NatsServer) -> AsyncIterator[tuple[Bus, LeaseKeeper]]:
    bus = await Bus.connect(nats_server.url, "edge")
    keeper = LeaseKeeper(bus, (SERVICE,))
    await keeper.start()  # before the replicas: it hears their first heartbeat
    await bus.flush()
    yield bus, keeper
    await keeper.stop()
    await bus.close()


async def say(bus: Bus, session_id: str, turn: int) -> None:
    await bus.publish(VAD, m.SpeechStarted(session_id=session_id, turn_id=turn, seq=turn, at=0.0))
    await bus.flush()


async def test_sessions_spread_over_replicas_and_reach_their_owner_only(
    nats_server: NatsServer, edge: tuple[Bus, LeaseKeeper]
) -> None:
    bus, keeper = edge
    one, two = [await start_replica(nats_server.url, f"r{i}-{uuid.uuid4().hex[:6]}") for i in (1, 2)]
    try:
        await asyncio.sleep(0.1)  # their heartbeats reach the edge
        first, second = uuid.uuid4().hex, uuid.uuid4().hex
        await keeper.open(first)
        await keeper.open(second)
        owners = {keeper.owner(SERVICE, first), keeper.owner(SERVICE, second)}
        assert owners == {one.name, two.name}, "the least loaded replica gets each new session"
        owner_of_first = one if keeper.owner(SERVICE, first) == one.name else two
        other = two if owner_of_first is one else one
        await say(bus, first, 1)
        await eventually(lambda: len(owner_of_first.heard_from(first)) == 1)
        await asyncio.sleep(0.1)
        assert other.heard_from(first) == []
        await asyncio.sleep(2.5)  # renewals keep both leases
        assert keeper.owner(SERVICE, first) == owner_of_first.name
        assert len(owner_of_first.assignment) == 1 and len(other.assignment) == 1

        # The session ends: its owner forgets it and stops listening.
        await bus.publish(SESSION, m.SessionEnded(session_id=first, turn_id=0, seq=9))
        await eventually(lambda: first in owner_of_first.released)
        keeper.close(first)
        await say(bus, first, 2)
        await asyncio.sleep(0.2)
        assert len(owner_of_first.heard_from(first)) == 2  # SpeechStarted(1) and SessionEnded, no more

        # Closing at the edge revokes: the owner forgets at once.
        other_session = second
        holder = one if keeper.owner(SERVICE, other_session) == one.name else two
        keeper.close(other_session)
        await eventually(lambda: other_session in holder.released)
        assert len(holder.assignment) == 0
    finally:
        await one.close()
        await two.close()


async def test_a_stopped_owner_is_replaced_without_state_and_a_draining_one_hands_over(
    nats_server: NatsServer, edge: tuple[Bus, LeaseKeeper]
) -> None:
    bus, keeper = edge
    first = await start_replica(nats_server.url, f"a-{uuid.uuid4().hex[:6]}")
    session = uuid.uuid4().hex
    await asyncio.sleep(0.1)
    await keeper.open(session)
    assert keeper.owner(SERVICE, session) == first.name
    second = await start_replica(nats_server.url, f"b-{uuid.uuid4().hex[:6]}")
    third: Replica | None = None
    try:
        # The owner dies (its connection and subscriptions vanish): no responders.
        await first.bus.close()
        await eventually(lambda: keeper.owner(SERVICE, session) == second.name, within=4)
        assert second.acquired == [(session, None)]  # a crash hands nothing over
        await say(bus, session, 1)
        await eventually(lambda: len(second.heard_from(session)) == 1)

        # Draining while the session is busy: it stays until idle, then goes with its state.
        third = await start_replica(nats_server.url, f"c-{uuid.uuid4().hex[:6]}")
        await asyncio.sleep(0.6)  # a heartbeat of the new replica
        second.busy.add(session)
        draining = asyncio.create_task(second.assignment.drain(time.monotonic() + 20))
        await asyncio.sleep(2.2)  # two renewals
        assert keeper.owner(SERVICE, session) == second.name and not draining.done()
        second.busy.discard(session)
        await eventually(lambda: keeper.owner(SERVICE, session) == third.name, within=4)
        await asyncio.wait_for(draining, 2)
        ((sid, handover),) = third.acquired
        assert sid == session and handover is not None
        assert handover.history == [m.ChatMessage("user", f"said on {second.name}")]
        await say(bus, session, 2)
        await eventually(lambda: len(third.heard_from(session)) == 1)
        assert len(second.heard_from(session)) == 1  # nothing after it gave the session back
    finally:
        await first.assignment.stop()
        await second.close()
        if third is not None:
            await third.close()


async def test_a_draining_replica_with_nothing_to_do_returns_at_once(nats_server: NatsServer) -> None:
    replica = await start_replica(nats_server.url, f"d-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    await replica.assignment.drain(time.monotonic() + 20)
    assert time.monotonic() - started < 1
    await replica.close()
