"""POST /offer refuses bad input with a 4xx (or 503) and a JSON reason; GET / serves the page."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCPeerConnection
from prometheus_client import REGISTRY

from services.common.bus import Bus
from services.common.probes import Readiness, add_probe_routes
from services.edge.config import Settings
from services.edge.ice import rtc_configuration
from services.edge.service import EdgeService
from tests.support import NatsServer

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeClient]:
    """An edge app on a test server; started (ready) only when a bus is given."""
    opened: list[tuple[Client, Any]] = []

    async def make(bus: Bus | None = None, **env: str) -> Client:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        service = EdgeService(Settings.from_env())
        readiness = Readiness()
        app = web.Application()
        add_probe_routes(app, readiness)
        service.add_routes(app)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        stop = None
        if bus is not None:
            stop = await service.start(bus, readiness)
            readiness.ready = True
        opened.append((client, stop))
        return client

    yield make
    for client, stop in opened:
        if stop is not None:
            await stop()
        await client.close()


async def offer_sdp(audio: bool = True) -> str:
    pc = RTCPeerConnection(rtc_configuration())
    pc.createDataChannel("events")
    if audio:
        pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def rejected(reason: str) -> float:
    value = REGISTRY.get_sample_value("voice_agent_edge_offers_rejected_total", {"reason": reason})
    return value or 0.0


async def post(client: Client, data: bytes | str) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/offer", data=data, headers={"Content-Type": "application/json"})
    return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ("{not json", 400, "not_json"),
        (b"\xff\xfe\x00", 400, "not_json"),
        ("[1, 2]", 400, "bad_fields"),
        ('{"type": "offer"}', 400, "bad_fields"),
        ('{"sdp": "", "type": "offer"}', 400, "bad_fields"),
        ('{"sdp": 5, "type": "offer"}', 400, "bad_fields"),
        ('{"sdp": "v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n"}', 400, "bad_fields"),
        ('{"sdp": "v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n", "type": "answer"}', 400, "bad_type"),
        (json.dumps({"sdp": "v=0\r\n" + "a=x\r\n" * 20000, "type": "offer"}), 413, "too_large"),
    ],
)
async def test_bad_bodies_are_refused_with_a_reason(
    make_client: MakeClient, body: str | bytes, status: int, reason: str
) -> None:
    client = await make_client()
    before = rejected(reason)
    got, payload = await post(client, body)
    assert got == status
    assert payload["reason"] == reason and payload["error"]
    assert rejected(reason) == before + 1


async def test_an_offer_without_audio_is_refused(make_client: MakeClient) -> None:
    client = await make_client()
    status, payload = await post(client, json.dumps({"sdp": await offer_sdp(audio=False), "type": "offer"}))
    assert (status, payload["reason"]) == (400, "no_audio")


async def test_a_valid_offer_before_start_is_503(make_client: MakeClient) -> None:
    client = await make_client()
    status, payload = await post(client, json.dumps({"sdp": await offer_sdp(), "type": "offer"}))
    assert (status, payload["reason"]) == (503, "not_ready")


async def test_sdp_that_aiortc_rejects_is_400(make_client: MakeClient, nats_server: NatsServer) -> None:
    bus = await Bus.connect(nats_server.url, "edge")
    try:
        client = await make_client(bus)
        broken = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
        status, payload = await post(client, json.dumps({"sdp": broken, "type": "offer"}))
        assert (status, payload["reason"]) == (400, "bad_sdp")
    finally:
        await bus.close()


async def test_answers_then_refuses_when_full(make_client: MakeClient, nats_server: NatsServer) -> None:
    bus = await Bus.connect(nats_server.url, "edge")
    try:
        client = await make_client(bus, EDGE_MAX_SESSIONS="1", EDGE_ICE_HOST_ADDRESSES="127.0.0.1")
        status, answer = await post(client, json.dumps({"sdp": await offer_sdp(), "type": "offer"}))
        assert status == 200 and answer["type"] == "answer"
        assert "m=audio" in answer["sdp"] and "a=candidate:" in answer["sdp"]  # ICE gathered
        assert "127.0.0.1" in answer["sdp"]
        status, payload = await post(client, json.dumps({"sdp": await offer_sdp(), "type": "offer"}))
        assert (status, payload["reason"]) == (503, "full")
    finally:
        await bus.close()


async def test_the_page_and_its_script_are_served(make_client: MakeClient) -> None:
    client = await make_client()
    page = await client.get("/")
    html = await page.text()
    assert page.status == 200 and "Talk" in html and "/static/app.js" in html
    script = await client.get("/static/app.js")
    text = await script.text()
    assert script.status == 200
    assert 'createDataChannel("events")' in text and "iceServers: []" in text
    assert "window.voiceAgent" in text
