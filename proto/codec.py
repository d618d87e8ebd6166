"""One msgpack encoder and one decoder per message union."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from proto.subjects import Channel

# ValidationError is a subclass of DecodeError: one except clause catches both.
DecodeError = msgspec.DecodeError

_encoder = msgspec.msgpack.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


@cache
def _decoder(union: Any) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(union)


def decode(channel: Channel, data: bytes) -> Any:
    """Decode ``data`` as one of ``channel``'s message types.

    Raises msgspec.DecodeError / msgspec.ValidationError on bad input; the bus
    adapter logs, counts and drops those.
    """
    return _decoder(channel.union).decode(data)


def decode_union(union: Any, data: bytes) -> Any:
    """Decode ``data`` as one of ``union``'s types (an Endpoint's requests or replies)."""
    return _decoder(union).decode(data)
