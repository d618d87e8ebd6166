"""Decode lanes: a recognizer on a thread of its own, and what it may take.

With one lane, every decode waits for the one before it. At a pause the
speculative final then waited for the partial in flight: up to 300 ms of the
reply's latency (6 of 15 turns in bench run 20261124-082606, 66-304 ms). With
``STT_PARALLEL_FINALS`` a second recognizer takes only finals and speculative
finals, so they start the moment they are due; and the partial lane's recognizer
waits for them between its steps (``idle``, FasterWhisperRecognizer's ``yield_to``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from services.stt.engine import SpeechRecognizer
from services.stt.planner import Lane

T = TypeVar("T")


def _idle_event() -> threading.Event:
    """An event for ``DecodeLane.idle``: set, as a lane starts idle."""
    event = threading.Event()
    event.set()
    return event


@dataclass
class DecodeLane:
    lane: Lane
    recognizer: SpeechRecognizer
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-decode")
    )
    # Set when a message may have made a decode due; each lane has its own, so
    # one worker clearing it never hides the news from the other.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None
    # Set while the lane is not decoding: another lane's recognizer may wait on it.
    idle: threading.Event = field(default_factory=_idle_event)

    def decoding(self, decode: Callable[[], T]) -> Callable[[], T]:
        """``decode``, marking the lane busy while it runs (on the lane's thread)."""

        def run() -> T:
            self.idle.clear()
            try:
                return decode()
            finally:
                self.idle.set()

        return run

    @property
    def engine(self) -> str:
        return str(getattr(self.recognizer, "name", type(self.recognizer).__name__))
