"""The edge service running in-process against a test's nats-server, on a free port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from services.common.bus import Bus
from services.common.probes import Readiness, add_probe_routes, start_http
from services.common.runner import Stop
from services.edge.config import Settings
from services.edge.service import EdgeService
from tests.support import free_port


@dataclass
class RunningEdge:
    service: EdgeService
    port: int
    readiness: Readiness
    stop: Stop  # a runner Graceful: it can drain first

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> int:
        manager = self.service.manager
        return len(manager.sessions) if manager is not None else 0


@contextlib.asynccontextmanager
async def run_edge(
    nats_url: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None = None
) -> AsyncIterator[RunningEdge]:
    """The running edge with its readiness and stop handle; ``env`` adds EDGE_ settings."""
    port = free_port()
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("EDGE_HTTP_PORT", str(port))
    monkeypatch.setenv("EDGE_ICE_HOST_ADDRESSES", "127.0.0.1")
    settings = Settings.from_env()
    service = EdgeService(settings)
    readiness = Readiness()
    app = web.Application()
    add_probe_routes(app, readiness)
    service.add_routes(app)
    bus = await Bus.connect(settings.nats_url, "edge")
    http = await start_http(app, settings.http_host, settings.http_port)
    stop = await service.start(bus, readiness)
    readiness.ready = True
    try:
        yield RunningEdge(service, port, readiness, stop)
    finally:
        await stop()
        await bus.close()
        await http.cleanup()


@contextlib.asynccontextmanager
async def serve_edge(
    nats_url: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[EdgeService, int]]:
    """Yields the running service and its HTTP port; ``env`` adds EDGE_ settings."""
    async with run_edge(nats_url, monkeypatch, env) as edge:
        yield edge.service, edge.port
