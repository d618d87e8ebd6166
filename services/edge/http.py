"""HTTP routes of the edge: the page (``GET /``, ``/static/*``) and ``POST /offer``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from services.edge.manager import SessionManager
from services.edge.metrics import OFFERS_REJECTED
from services.edge.offer import OfferError, parse_offer

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
NO_CACHE = {"Cache-Control": "no-cache"}

GetManager = Callable[[], SessionManager | None]


async def read_limited(request: web.Request, max_bytes: int) -> bytes:
    """The body, refusing early once it passes ``max_bytes`` (413)."""
    too_large = OfferError(413, "too_large", f"offer body over {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    body = bytearray()
    async for piece in request.content.iter_any():
        body += piece
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def add_edge_routes(app: web.Application, get_manager: GetManager, max_offer_bytes: int) -> None:
    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers=NO_CACHE)

    async def offer(request: web.Request) -> web.Response:
        try:
            body = await read_limited(request, max_offer_bytes)
            sdp = parse_offer(body, max_offer_bytes)
            manager = get_manager()
            if manager is None:
                raise OfferError(503, "not_ready", "the edge is starting: try again in a moment")
            answer = await manager.answer(sdp)
        except OfferError as exc:
            OFFERS_REJECTED.labels(exc.reason).inc()
            return web.json_response({"error": exc.message, "reason": exc.reason}, status=exc.status)
        except Exception:  # still a JSON answer the page can show
            log.exception("offer failed")
            OFFERS_REJECTED.labels("internal").inc()
            return web.json_response({"error": "the edge failed to answer", "reason": "internal"}, status=500)
        return web.json_response({"sdp": answer, "type": "answer"})

    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_post("/offer", offer)
