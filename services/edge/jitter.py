"""The edge's receive jitter buffer for the microphone.

aiortc decodes an audio packet only once four newer ones are in (``prefetch=4``):
80 ms of 20 ms Opus frames waited out on every frame, before the VAD sees it.
That wait buys nothing here: the buffer still holds the packets until the missing
one arrives or it overflows (capacity 16, 320 ms), whatever the prefetch, and the
edge consumes frames as they come rather than playing them on a clock. With
``prefetch=1`` a frame is decoded as soon as the next one proves it complete:
mic -> VAD is 60 ms shorter, and so are end-of-turn and barge-in.

aiortc has no setting for it, so the receiver's buffer is replaced before the
first packet arrives (after setRemoteDescription, before ICE connects).
"""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer

log = logging.getLogger(__name__)

AIORTC_AUDIO_CAPACITY = 16  # aiortc's own: 320 ms of 20 ms frames
_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


def set_audio_prefetch(pc: RTCPeerConnection, prefetch: int) -> int:
    """Give every audio receiver of ``pc`` a buffer that decodes after ``prefetch``
    newer packets; returns how many receivers were changed (0 if aiortc changed
    its internals: the default buffer then stays, which is slower but correct)."""
    changed = 0
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind != "audio" or not hasattr(receiver, _ATTRIBUTE):
            continue
        setattr(receiver, _ATTRIBUTE, JitterBuffer(capacity=AIORTC_AUDIO_CAPACITY, prefetch=prefetch))
        changed += 1
    if changed == 0:
        log.warning("no aiortc audio receiver to tune: the jitter buffer keeps aiortc's 80 ms prefetch")
    return changed
