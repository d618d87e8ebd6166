"""Message schemas and subject names for the voice agent bus."""

from proto import messages, subjects
from proto.codec import DecodeError, decode, encode

__all__ = ["DecodeError", "decode", "encode", "messages", "subjects"]
