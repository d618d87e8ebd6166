"""/healthz, /readyz and /metrics on an aiohttp app."""

from __future__ import annotations

import os
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.replica import replica_id


class Readiness:
    """Ready once every model is loaded and the bus is connected, until draining."""

    def __init__(self) -> None:
        self.ready = False
        self.draining = False  # shutting down (SIGTERM): never ready again
        self.checks: list[Callable[[], bool]] = []

    def is_ready(self) -> bool:
        return self.ready and not self.draining and all(check() for check in self.checks)


def add_probe_routes(app: web.Application, readiness: Readiness) -> None:
    async def healthz(_: web.Request) -> web.Response:
        # Still alive while draining. The replica id and pid tell replicas apart.
        return web.json_response({"status": "ok", "replica": replica_id(), "pid": os.getpid()})

    async def readyz(_: web.Request) -> web.Response:
        if readiness.is_ready():
            return web.json_response({"status": "ready"})
        status = "draining" if readiness.draining else "not ready"
        return web.json_response({"status": status}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def start_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        from services.common.errors import StartupError

        raise StartupError(f"cannot listen on {host}:{port} ({exc.strerror}): set the port variable") from exc
    return runner
