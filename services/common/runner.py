"""Start-up and shutdown common to every service process.

A service provides ``start(bus, readiness)``: it loads and warms its engines,
subscribes, and returns an async ``stop`` callable. A service that serves more
than the probes passes ``add_routes``. The HTTP server is up before the models
load, so /healthz answers while /readyz still says 503. The runner owns logging, tracing, NATS, the HTTP
server, signals and the one-line start-up errors.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from services.common import metrics, telemetry
from services.common.bus import Bus
from services.common.config import ServiceSettings
from services.common.errors import StartupError
from services.common.probes import Readiness, add_probe_routes, start_http

Stop = Callable[[], Awaitable[None]]
Start = Callable[[Bus, Readiness], Awaitable[Stop]]
AddRoutes = Callable[[web.Application], None]

log = logging.getLogger(__name__)


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
    log.info("stopping")
    readiness.ready = False
    await stop()
    await bus.close()
    await http.cleanup()
