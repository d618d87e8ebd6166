"""A thread's own CPU priority (Linux: each thread has its own nice value, and the
threads it starts inherit it)."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

LOWEST = 19


def lower_this_thread(by: int) -> int | None:
    """Raise the calling thread's nice by ``by`` (capped at 19); the new nice, or None
    where a thread's nice cannot be set (the thread then keeps the process's)."""
    try:
        tid = threading.get_native_id()
        nice = min(LOWEST, os.getpriority(os.PRIO_PROCESS, tid) + by)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (AttributeError, OSError) as exc:
        log.info("thread %s keeps the process's priority: %s", threading.current_thread().name, exc)
        return None
    return nice
