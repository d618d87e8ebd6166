"""A reply generated ahead of its request, while the user has paused.

At the pause stt decodes the speculative final again from the whole utterance
(~200-300 ms on the 2-core machine), and only then does the request reach the
llm. The newest partial transcript already says the same words in most turns
(10 of 18 and 11 of 18 in bench runs 20261124-162709 and -162031). So turns
sends that partial's prompt as an ``LlmPrime`` with ``ahead``, and the llm
starts generating the reply at once, publishing nothing: a ``Draft``. When the
request comes with the same prompt, it adopts the draft's stream, and the
tokens generated meanwhile go out at once. Any other request, a Cancel, a newer
prime or ``timeout_s`` drops it; its tokens are never published.

A draft generates its first ``tokens`` tokens and then waits for its request.
On the 2-core machine the default is one: generating beside stt's final made
that decode up to 1.5x slower (each token reads all the weights), and on the
bench's speech the final differs from the partial in about half the turns
(Whisper spells "ill-disposed" three ways), so a longer draft cost those turns
about as much as it saved the others (4 and 8 tokens: within the noise of 1 in
docs/architecture.md's runs). Where the llm has cores of its own, eight tokens
hold the first chunk of three words, ready when the request comes.

The draft holds the model lock from the moment it starts; an adopting reply
takes over the stream and the lock, and releases the lock when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from proto.messages import LlmPrime, LlmRequest
from services.common import metrics
from services.llm.engine import ThreadedStream

log = logging.getLogger(__name__)

SERVICE = "llm"
DRAFTS = Counter(
    f"{metrics.PREFIX}_llm_drafts",
    "Replies generated ahead at the user's pause, by how they ended: adopted (a request "
    "with the same prompt took them over), dropped (another request, a Cancel or newer "
    "words came), expired (no request in time), busy (the model was taken)",
    ["service", "outcome"],
)


class Ending(enum.StrEnum):
    ADOPTED = "adopted"
    DROPPED = "dropped"
    EXPIRED = "expired"


class Draft:
    """The generation of ``prime``'s prompt, kept unpublished until adopted or dropped."""

    def __init__(
        self,
        prime: LlmPrime,
        start: Callable[[int], ThreadedStream],
        model: asyncio.Lock,
        timeout_s: float,
        tokens: int,
    ) -> None:
        self.prime = prime
        self._tokens = tokens
        self._start = start
        self._model = model
        self._timeout_s = timeout_s
        self._stream: ThreadedStream | None = None
        self._started = asyncio.Event()  # the stream exists, or the draft ended without one
        self._ended = asyncio.Event()
        self._ending: Ending | None = None
        self._born = time.monotonic()
        self.task = asyncio.create_task(self._run(), name=f"llm draft {prime.session_id}")

    def matches(self, request: LlmRequest) -> bool:
        """``request`` asks for exactly the reply this draft generates."""
        p = self.prime
        return (
            (request.session_id, request.turn_id) == (p.session_id, p.turn_id)
            and request.max_tokens == p.max_tokens
            and request.messages == p.messages
        )

    def drop(self) -> None:
        """Stop generating (if adopted already, nothing changes)."""
        self._end(Ending.DROPPED)

    async def adopt(self) -> ThreadedStream | None:
        """The draft's stream, its pieces so far still queued, with the model lock now
        the caller's to release; None if the draft ended first (the caller then
        generates the usual way)."""
        await self._started.wait()
        if self._stream is None or not self._end(Ending.ADOPTED):
            return None
        self._stream.release()
        return self._stream

    def _end(self, ending: Ending) -> bool:
        if self._ending is not None:
            return False
        self._ending = ending
        self._ended.set()
        DRAFTS.labels(SERVICE, ending.value).inc()
        p = self.prime
        age_ms = (time.monotonic() - self._born) * 1000
        log.info(
            "draft of session %s turn %d %s after %.0f ms", p.session_id, p.turn_id, ending.value, age_ms
        )
        return True

    async def _run(self) -> None:
        adopted = False
        try:
            await self._model.acquire()
        except asyncio.CancelledError:
            self._started.set()
            raise
        try:
            if self._ending is not None:
                return  # dropped while waiting for the model
            self._stream = self._start(self._tokens)
            self._started.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), self._timeout_s)
            self._end(Ending.EXPIRED)
            adopted = self._ending is Ending.ADOPTED
            if not adopted:
                self._stream.cancel()
                await self._stream.finished  # the model is free once the worker returns
        finally:
            self._started.set()
            if not adopted:
                if self._stream is not None:
                    self._stream.cancel()  # a no-op unless this task was cancelled
                self._model.release()
