"""A thread's own CPU priority (Linux: each thread has its own nice value, and the
threads it starts inherit it)."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

LOWEST = 19


def lower_this_thread(by: int) -> None:
    """Raise the calling thread's nice by ``by`` (capped at 19); where a thread's nice
    cannot be set, the thread keeps the process's."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(LOWEST, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (AttributeError, OSError) as exc:
        log.info("thread %s keeps the process's priority: %s", threading.current_thread().name, exc)
