"""The edge's receive jitter buffer for the microphone.

aiortc decodes an audio packet only once four newer ones are in (``prefetch=4``):
80 ms of 20 ms Opus frames waited out on every frame, before the VAD sees it.
That wait buys nothing here: the buffer still holds the packets until the missing
one arrives or it overflows (capacity 16, 320 ms), whatever the prefetch, and the
edge consumes frames as they come rather than playing them on a clock. With
``prefetch=1`` a frame is decoded as soon as the next one proves it complete:
mic -> VAD is 60 ms shorter, and so are end-of-turn and barge-in.

With ``prefetch=0`` (the default) not even that: aiortc's buffer reassembles
frames from packets, so it knows a frame is whole only when a packet of the
next one arrives, 20 ms later. An Opus RTP packet always holds one whole frame
(RFC 7587), so ``AudioPacketBuffer`` hands each packet on as it arrives.

aiortc has no setting for it, so the receiver's buffer is replaced before the
first packet arrives (after setRemoteDescription, before ICE connects).
"""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)

AIORTC_AUDIO_CAPACITY = 16  # aiortc's own: 320 ms of 20 ms frames
_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"
HALF_SEQUENCE_SPACE = 1 << 15  # RTP sequence numbers wrap at 2**16


class AudioPacketBuffer(JitterBuffer):
    """Every audio packet is a whole Opus frame: decode it as it arrives. Dropped:
    a packet older than the newest one handed on (reordered, or a duplicate: the
    decoder has moved past it, and the edge does not play the microphone on a
    clock, so there is no slot to put it back in), and one with no payload (RTP
    padding) or with the timestamp of the frame handed on before: nothing new to
    decode (aiortc's buffer would fold it into that frame)."""

    def __init__(self) -> None:
        super().__init__(capacity=AIORTC_AUDIO_CAPACITY)
        self._newest: int | None = None
        self._timestamp: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._newest is not None:
            ahead = (sequence - self._newest) % (1 << 16)
            if ahead == 0 or ahead >= HALF_SEQUENCE_SPACE:
                return False, None
        self._newest = sequence
        # The receiver puts the depayloaded frame in ``_data``, as aiortc's own buffer reads it.
        data: bytes = getattr(packet, "_data", b"")
        if not data or packet.timestamp == self._timestamp:
            return False, None
        self._timestamp = packet.timestamp
        return False, JitterFrame(data=data, timestamp=packet.timestamp)


def set_audio_prefetch(pc: RTCPeerConnection, prefetch: int) -> int:
    """Give every audio receiver of ``pc`` a buffer that decodes after ``prefetch``
    newer packets (0: each packet as it arrives); returns how many receivers were
    changed (0 if aiortc changed its internals: the default buffer then stays,
    which is slower but correct)."""
    changed = 0
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind != "audio" or not hasattr(receiver, _ATTRIBUTE):
            continue
        buffer = (
            AudioPacketBuffer() if prefetch == 0 else JitterBuffer(AIORTC_AUDIO_CAPACITY, prefetch=prefetch)
        )
        setattr(receiver, _ATTRIBUTE, buffer)
        changed += 1
    if changed == 0:
        log.warning("no aiortc audio receiver to tune: the jitter buffer keeps aiortc's 80 ms prefetch")
    return changed
