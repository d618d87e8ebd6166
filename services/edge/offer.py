"""Validation of a ``POST /offer`` body: pure, before any WebRTC work."""

from __future__ import annotations

import json
import re

AUDIO_LINE = re.compile(r"^m=audio\s", re.MULTILINE)
APPLICATION_LINE = re.compile(r"^m=application\s", re.MULTILINE)


class OfferError(Exception):
    """An offer we refuse; ``status`` is the HTTP status, ``reason`` a metric label."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def parse_offer(body: bytes, max_bytes: int) -> str:
    """The SDP of a valid offer body ``{"sdp": ..., "type": "offer"}``."""
    if len(body) > max_bytes:
        raise OfferError(413, "too_large", f"offer body over {max_bytes} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise OfferError(400, "not_json", "body is not JSON") from None
    if not isinstance(data, dict):
        raise OfferError(400, "bad_fields", 'expected a JSON object {"sdp": ..., "type": "offer"}')
    sdp, kind = data.get("sdp"), data.get("type")
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferError(400, "bad_fields", "missing or empty string field 'sdp'")
    if not isinstance(kind, str):
        raise OfferError(400, "bad_fields", "missing string field 'type'")
    if kind != "offer":
        raise OfferError(400, "bad_type", f"type must be 'offer', not {kind[:20]!r}")
    if not AUDIO_LINE.search(sdp):
        raise OfferError(400, "no_audio", "the offer has no audio m-line: the edge needs the microphone")
    return sdp


def has_data_channel(sdp: str) -> bool:
    return bool(APPLICATION_LINE.search(sdp))
