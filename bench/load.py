"""Another process that keeps part of a core busy, as stt, tts, the edge and a
browser do during a call: for the llm benches that compare thread counts."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event as ProcessEvent

SLICE_S = 0.01


def _load(stop: ProcessEvent, share: float) -> None:
    """Busy ``share`` of every 10 ms, asleep the rest."""
    while not stop.is_set():
        started = time.perf_counter()
        while time.perf_counter() - started < SLICE_S * share:
            pass
        if share < 1:
            time.sleep(SLICE_S * (1 - share))


@contextmanager
def other_core(share: float) -> Iterator[None]:
    """Another process keeps ``share`` of a core busy (1 = all of it) while the block runs."""
    if share <= 0:
        yield
        return
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=_load, args=(stop, share), daemon=True)
    process.start()
    try:
        yield
    finally:
        stop.set()
        process.join()
