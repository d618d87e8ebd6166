"""Start-up and shutdown common to every service process.

A service provides ``start(bus, readiness)``: it loads and warms its engines,
subscribes, and returns an async ``stop`` callable. A service that serves more
than the probes passes ``add_routes``. The HTTP server is up before the models
load, so /healthz answers while /readyz still says 503. The runner owns logging, tracing, NATS, the HTTP
server, signals and the one-line start-up errors.

Graceful shutdown: on SIGTERM (or Ctrl-C) /readyz turns 503 at once, then a
service whose ``stop`` is a ``Graceful`` drains: it takes no new work and finishes
or hands over what it has, for at most VOICE_AGENT_SHUTDOWN_GRACE_S. A second
signal cuts the drain short. Then ``stop`` runs and NATS is drained and closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from services.common import metrics, replica, telemetry
from services.common.bus import Bus
from services.common.config import ServiceSettings
from services.common.errors import StartupError
from services.common.probes import Readiness, add_probe_routes, start_http

Stop = Callable[[], Awaitable[None]]
# Given the deadline (time.monotonic): take no new work, finish or hand over the rest.
Drain = Callable[[float], Awaitable[None]]
Start = Callable[[Bus, Readiness], Awaitable[Stop]]
AddRoutes = Callable[[web.Application], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Graceful:
    """A ``stop`` that can drain first; calling it stops, like any Stop."""

    stop: Stop
    drain: Drain

    async def __call__(self) -> None:
        await self.stop()


def main(service: str, settings: ServiceSettings, start: Start, add_routes: AddRoutes | None = None) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(service, settings, start, add_routes))
    except StartupError as exc:
        print(f"{service}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


async def _serve(service: str, settings: ServiceSettings, start: Start, add_routes: AddRoutes | None) -> None:
    telemetry.setup_tracing(service)
    readiness = Readiness()
    app = web.Application(client_max_size=256 * 1024)
    add_probe_routes(app, readiness)
    if add_routes is not None:
        add_routes(app)
    bus = await Bus.connect(settings.nats_url, service)
    readiness.checks.append(lambda: bus.connected)
    http = await start_http(app, settings.http_host, settings.http_port)
    stop = await start(bus, readiness)
    await bus.flush()  # ready means subscribed on the server, not just locally
    readiness.ready = True
    metrics.READY.labels(service).set(1)
    log.info("ready on http://%s:%d", settings.http_host, settings.http_port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    stopping.clear()
    readiness.draining = True  # /readyz 503 at once: no new traffic is routed here
    metrics.READY.labels(service).set(0)
    if isinstance(stop, Graceful):
        await _drain(stop, replica.settings().shutdown_grace_s, stopping)
    log.info("stopping")
    await stop()
    await bus.close()
    await http.cleanup()


async def _drain(graceful: Graceful, grace_s: float, interrupted: asyncio.Event) -> None:
    """Run the drain until it is done, the grace is over or a second signal comes."""
    log.info("draining for at most %.0f s", grace_s)
    started = time.monotonic()
    draining = asyncio.ensure_future(graceful.drain(started + grace_s))
    again = asyncio.create_task(interrupted.wait())
    await asyncio.wait({draining, again}, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
    for task in (draining, again):
        task.cancel()
    results = await asyncio.gather(draining, again, return_exceptions=True)
    if isinstance(results[0], Exception):
        log.error("drain failed", exc_info=results[0])
    cut = " (cut short)" if interrupted.is_set() else ""
    log.info("drained in %.1f s%s", time.monotonic() - started, cut)
