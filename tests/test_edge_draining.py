"""The edge draining on SIGTERM (what the runner calls), in process over loopback
WebRTC with a real nats-server: offers get 503 "draining", a live call goes on
until it ends or the grace does, then stopping closes what is left."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from services.common.runner import Graceful
from services.edge.ice import use_host_addresses
from tests.edge_harness import RunningEdge, run_edge
from tests.support import NatsServer
from tests.webrtc_client import EdgeClient, EdgeRefused

pytestmark = pytest.mark.e2e


@pytest.fixture
async def edge(nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningEdge]:
    async with run_edge(nats_server.url, monkeypatch) as running:
        assert isinstance(running.stop, Graceful)
        yield running


async def test_a_draining_edge_refuses_offers_and_keeps_its_call_until_the_grace_ends(
    edge: RunningEdge,
) -> None:
    use_host_addresses(["127.0.0.1"])
    client = EdgeClient(edge.url)
    await client.connect()
    try:
        edge.readiness.draining = True  # what the runner does on SIGTERM
        late = EdgeClient(edge.url)
        with pytest.raises(EdgeRefused) as refused:
            await late.connect()
        await late.close()
        assert refused.value.status == 503 and refused.value.body["reason"] == "draining"

        started = time.monotonic()
        await edge.stop.drain(started + 1.5)
        assert time.monotonic() - started >= 1.4  # the call went on for the whole grace
        assert edge.calls == 1 and client.pc.connectionState == "connected"
        await edge.stop()  # then stopping closes it
        assert edge.calls == 0
    finally:
        await client.close()


async def test_a_draining_edge_returns_once_its_last_call_ends(edge: RunningEdge) -> None:
    use_host_addresses(["127.0.0.1"])
    client = EdgeClient(edge.url)
    await client.connect()
    edge.readiness.draining = True
    started = time.monotonic()
    draining = asyncio.create_task(edge.stop.drain(started + 30))
    await asyncio.sleep(0.3)
    assert not draining.done()
    await client.close()  # the user hangs up
    await asyncio.wait_for(draining, 25)
    print(f"\ndrained {time.monotonic() - started:.1f} s after SIGTERM")
    assert edge.calls == 0
