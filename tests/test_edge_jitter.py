"""The edge shortens aiortc's receive jitter buffer for the microphone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from services.edge.jitter import AudioPacketBuffer, set_audio_prefetch


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


def opus_packet(sequence: int, data: bytes | None = None, timestamp: int | None = None) -> RtpPacket:
    packet = RtpPacket(
        payload_type=111,
        sequence_number=sequence % (1 << 16),
        timestamp=960 * sequence if timestamp is None else timestamp,
    )
    # The receiver's depayloader sets it.
    packet._data = f"opus {sequence}".encode() if data is None else data  # type: ignore[attr-defined]
    return packet


@pytest.mark.asyncio
async def test_a_frame_is_decoded_as_soon_as_the_next_one_arrives() -> None:
    async with receiving("audio") as pc:
        set_audio_prefetch(pc, 1)
        first = buffer_of(pc).add(opus_packet(1))
        second = buffer_of(pc).add(opus_packet(2))
        assert first[1] is None
        assert second[1] is not None and second[1].timestamp == 960


@pytest.mark.asyncio
async def test_with_no_prefetch_each_packet_is_decoded_as_it_arrives() -> None:
    async with receiving("audio") as pc:
        assert set_audio_prefetch(pc, 0) == 1
        assert isinstance(buffer_of(pc), AudioPacketBuffer)
        frame = buffer_of(pc).add(opus_packet(1))[1]
        assert frame is not None and (frame.data, frame.timestamp) == (b"opus 1", 960)


def test_a_straggler_or_a_duplicate_is_dropped_across_the_sequence_wrap() -> None:
    buffer = AudioPacketBuffer()
    handed_on = [
        frame.data.decode()
        for sequence in (65534, 65535, 65535, 65537, 65536, 65538, 65539 + 20000)
        if (frame := buffer.add(opus_packet(sequence))[1]) is not None
    ]
    # 65536 wraps to 0: it arrived after 65537 (1), so it is dropped; a gap is no reason to wait.
    assert handed_on == ["opus 65534", "opus 65535", "opus 65537", "opus 65538", "opus 85539"]


@pytest.mark.asyncio
async def test_no_audio_receiver_changes_nothing() -> None:
    async with receiving("video") as pc:
        assert set_audio_prefetch(pc, 1) == 0


def test_padding_and_a_second_packet_of_the_same_frame_are_not_decoded() -> None:
    buffer = AudioPacketBuffer()
    assert buffer.add(opus_packet(1))[1] is not None
    assert buffer.add(opus_packet(2, data=b""))[1] is None  # padding only
    assert buffer.add(opus_packet(3, timestamp=960))[1] is None  # the frame already handed on
    frame = buffer.add(opus_packet(4))[1]
    assert frame is not None and frame.data == b"opus 4"
