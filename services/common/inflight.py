"""Work a replica has taken on and not finished: what a graceful stop waits for.

The llm and tts adapters count their requests here from the outside (their
engines' own bookkeeping stays private): a key is added when a request is
accepted and removed when its last output is published, or when a Cancel, a
newer turn or the end of the session makes it moot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from nats.aio.subscription import Subscription

K = TypeVar("K", bound=Hashable)

POLL_S = 0.05


class InFlight(Generic[K]):
    def __init__(self) -> None:
        self._open: Counter[K] = Counter()

    def __len__(self) -> int:
        return sum(self._open.values())

    def add(self, key: K) -> None:
        self._open[key] += 1

    def done(self, key: K) -> None:
        if self._open[key] <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] -= 1

    def discard(self, where: Callable[[K], bool]) -> None:
        """Forget every key ``where`` is true for (cancelled, superseded, session ended)."""
        for key in [k for k in self._open if where(k)]:
            del self._open[key]

    async def wait_idle(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> bool:
        """Until nothing is in flight (True) or ``deadline`` (on ``clock``) passes (False)."""
        while self._open:
            if clock() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True


class Unfinished(Protocol):
    def __len__(self) -> int: ...

    async def wait_idle(self, deadline: float) -> bool: ...


async def leave_queue_and_finish(
    queue: Subscription, inflight: Unfinished, deadline: float, what: str, log: logging.Logger
) -> None:
    """A draining replica's work queue: out of the queue group (what was delivered is
    still taken), then the work accepted runs to its end, or to ``deadline``."""
    try:
        await queue.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
    except Exception:  # the connection may be closing
        log.debug("queue drain failed", exc_info=True)
    await inflight.wait_idle(deadline)
    log.info("drained: %d %s unfinished", len(inflight), what)
