"""The edge shortens aiortc's receive jitter buffer for the microphone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from services.edge.jitter import set_audio_prefetch


@asynccontextmanager
async def receiving(kind: str) -> AsyncIterator[RTCPeerConnection]:
    """A peer connection with one receive-only transceiver of ``kind``."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(kind, direction="recvonly")
        yield pc
    finally:
        await pc.close()


def buffer_of(pc: RTCPeerConnection) -> Any:
    return pc.getTransceivers()[0].receiver._RTCRtpReceiver__jitter_buffer


@pytest.mark.asyncio
async def test_audio_receivers_get_the_configured_prefetch() -> None:
    async with receiving("audio") as pc:
        assert buffer_of(pc)._prefetch == 4  # aiortc's own
        assert set_audio_prefetch(pc, 1) == 1
        assert (buffer_of(pc)._prefetch, buffer_of(pc).capacity) == (1, 16)


@pytest.mark.asyncio
async def test_a_frame_is_decoded_as_soon_as_the_next_one_arrives() -> None:
    async with receiving("audio") as pc:
        set_audio_prefetch(pc, 1)
        packets = [RtpPacket(payload_type=111, sequence_number=n, timestamp=960 * n) for n in (1, 2)]
        for packet in packets:
            packet._data = b"opus"  # type: ignore[attr-defined]  # the receiver's depayloader sets it
        first = buffer_of(pc).add(packets[0])
        second = buffer_of(pc).add(packets[1])
        assert first[1] is None
        assert second[1] is not None and second[1].timestamp == 960


@pytest.mark.asyncio
async def test_no_audio_receiver_changes_nothing() -> None:
    async with receiving("video") as pc:
        assert set_audio_prefetch(pc, 1) == 0
