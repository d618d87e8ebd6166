"""The edge draining on SIGTERM (what the runner calls), in process over loopback
WebRTC with a real nats-server: offers get 503 "draining", a live call goes on
until it ends or the grace does, then stopping closes what is left."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.common.bus import Bus
from services.common.probes import Readiness, add_probe_routes, start_http
from services.common.runner import Graceful
from services.edge.config import Settings
from services.edge.ice import use_host_addresses
from services.edge.service import EdgeService
from tests.support import NatsServer, free_port
from tests.webrtc_client import EdgeClient, EdgeRefused

pytestmark = pytest.mark.e2e


class Edge:
    def __init__(self, service: EdgeService, readiness: Readiness, stop: Graceful, port: int) -> None:
        self.service = service
        self.readiness = readiness
        self.stop = stop
        self.url = f"http://127.0.0.1:{port}"

    @property
    def calls(self) -> int:
        manager = self.service.manager
        return len(manager.sessions) if manager is not None else 0


@pytest.fixture
async def edge(nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Edge]:
    port = free_port()
    monkeypatch.setenv("EDGE_HTTP_PORT", str(port))
    monkeypatch.setenv("EDGE_ICE_HOST_ADDRESSES", "127.0.0.1")
    settings = Settings.from_env()
    service = EdgeService(settings)
    readiness = Readiness()
    app = web.Application()
    add_probe_routes(app, readiness)
    service.add_routes(app)
    bus = await Bus.connect(nats_server.url, "edge")
    http = await start_http(app, settings.http_host, settings.http_port)
    stop = await service.start(bus, readiness)
    assert isinstance(stop, Graceful)
    readiness.ready = True
    try:
        yield Edge(service, readiness, stop, port)
    finally:
        await stop()
        await bus.close()
        await http.cleanup()


async def test_a_draining_edge_refuses_offers_and_keeps_its_call_until_the_grace_ends(edge: Edge) -> None:
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


async def test_a_draining_edge_returns_once_its_last_call_ends(edge: Edge) -> None:
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
