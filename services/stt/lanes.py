"""Decode lanes: a recognizer on a thread of its own, and what it may take.

With one lane, every decode waits for the one before it. At a pause the
speculative final then waited for the partial in flight: up to 300 ms of the
reply's latency (6 of 15 turns in bench run 20261124-082606, 66-304 ms). With
``STT_PARALLEL_FINALS`` a second recognizer takes only finals and speculative
finals, so they start the moment they are due; and the partial lane's recognizer
waits for them between its steps (``idle``, FasterWhisperRecognizer's ``yield_to``),
and stops there if their transcript of its utterance is out (``abandon``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from services.common import priority
from services.stt.config import Settings
from services.stt.engine import SpeechRecognizer, load_recognizer
from services.stt.planner import Lane


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
    # Set while the lane is not decoding or publishing: another lane's recognizer may
    # wait on it, and then finds ``abandon`` as the publish left it.
    idle: threading.Event = field(default_factory=_idle_event)
    # The partial lane's (with two lanes): set when the other lane published a
    # transcript of the utterance this lane's partial decodes (its words are out).
    abandon: threading.Event | None = None

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """The lane is busy for the block (a decode and its publishing, on the event loop)."""
        self.idle.clear()
        try:
            yield
        finally:
            self.idle.set()

    @property
    def engine(self) -> str:
        return str(getattr(self.recognizer, "name", type(self.recognizer).__name__))


async def load_lane(
    settings: Settings,
    lane: Lane,
    *,
    yield_to: threading.Event | None = None,
    abandon: threading.Event | None = None,
    nicer_by: int = 0,
) -> DecodeLane:
    """A lane whose recognizer was loaded and warmed on the lane's own thread (the
    event loop keeps answering /healthz meanwhile); its recognizer waits for the
    lane whose ``idle`` event is ``yield_to``, and stops a partial there once ``abandon``
    is set. With ``nicer_by`` that thread, and the engine threads it starts while
    loading, run at a lower priority."""
    executor = ThreadPoolExecutor(
        max_workers=1,
        thread_name_prefix=f"stt-decode-{lane}",
        initializer=functools.partial(priority.lower_this_thread, nicer_by) if nicer_by else None,
    )
    try:
        recognizer = await asyncio.get_running_loop().run_in_executor(
            executor,
            load_recognizer,
            settings.model_path,
            settings.cpu_threads,
            settings.silence_rms,
            settings.trim_window,
            yield_to,
            abandon,
        )
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return DecodeLane(lane, recognizer, executor, abandon=abandon)
