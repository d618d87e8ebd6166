"""Decode lanes: a recognizer on a thread of its own, and what it may take.

With one lane, every decode waits for the one before it. At a pause the
speculative final then waited for the partial in flight: up to 300 ms of the
reply's latency (6 of 15 turns in bench run 20261124-082606, 66-304 ms). With
``STT_PARALLEL_FINALS`` a second recognizer takes only finals and speculative
finals, so they start the moment they are due.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from services.stt.engine import SpeechRecognizer
from services.stt.planner import Lane


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

    @property
    def engine(self) -> str:
        return str(getattr(self.recognizer, "name", type(self.recognizer).__name__))
