"""The edge shortens aiortc's receive jitter buffer for the microphone."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from services.edge.jitter import set_audio_prefetch


def _buffer(pc: RTCPeerConnection) -> object:
    return pc.getTransceivers()[0].receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_audio_receivers_get_the_configured_prefetch() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="recvonly")
        assert _buffer(pc)._prefetch == 4  # type: ignore[attr-defined]  # aiortc's own
        assert set_audio_prefetch(pc, 1) == 1
        buffer = _buffer(pc)
        assert buffer._prefetch == 1  # type: ignore[attr-defined]
        assert buffer.capacity == 16  # type: ignore[attr-defined]
    finally:
        await pc.close()


@pytest.mark.asyncio
async def test_a_frame_is_decoded_as_soon_as_the_next_one_arrives() -> None:
    from aiortc.rtp import RtpPacket

    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="recvonly")
        set_audio_prefetch(pc, 1)
        buffer = _buffer(pc)
        packets = [RtpPacket(payload_type=111, sequence_number=n, timestamp=960 * n) for n in (1, 2)]
        for packet in packets:
            packet._data = b"opus"  # type: ignore[attr-defined]  # the receiver's depayloader sets it
        first = buffer.add(packets[0])  # type: ignore[attr-defined]
        second = buffer.add(packets[1])  # type: ignore[attr-defined]
        assert first[1] is None
        assert second[1] is not None and second[1].timestamp == 960
    finally:
        await pc.close()


@pytest.mark.asyncio
async def test_no_audio_receiver_changes_nothing() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        assert set_audio_prefetch(pc, 1) == 0
    finally:
        await pc.close()
