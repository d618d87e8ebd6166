"""What the logic asks the adapter to do; the adapter owns the bus and the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import msgspec

from proto.subjects import Channel


class Outcome(StrEnum):
    """How an agent reply ended."""

    COMPLETED = "completed"  # played to the end
    INTERRUPTED = "interrupted"  # the edge stopped playout (barge-in)
    SUPERSEDED = "superseded"  # a newer utterance replaced it before it was heard
    FAILED = "failed"  # the llm ended with an error or with nothing to say
    TIMED_OUT = "timed_out"  # nothing played within reply_timeout_s
    DISCARDED = "discarded"  # speculative, and the user went on speaking: never heard


@dataclass(frozen=True)
class Publish:
    channel: Channel
    message: msgspec.Struct


@dataclass(frozen=True)
class Drop:
    """A message that was ignored; counted as bus_messages_dropped{reason}."""

    channel: Channel
    reason: str


@dataclass(frozen=True)
class TurnClosed:
    """An agent reply is over; for metrics and the log line."""

    session_id: str
    turn_id: int
    outcome: Outcome
    heard_text: str
    generated_text: str
    seconds: float  # from request to close

    @property
    def interrupted(self) -> bool:
        return self.outcome in (Outcome.INTERRUPTED, Outcome.SUPERSEDED)


Effect = Publish | Drop | TurnClosed
