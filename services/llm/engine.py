"""The chat engine interface and the bridge from its worker thread to asyncio.

An engine is a blocking generator of text pieces: llama.cpp computes tokens
on the calling thread, so the service runs ``stream`` in a worker thread and
reads the pieces through an asyncio queue. Cancelling wakes the reader at
once; the engine notices ``cancelled`` before its next token, or at once mid-token
if it is an ``InterruptibleEngine``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from proto.messages import ChatMessage


class EngineError(Exception):
    """The engine failed on one request; the service answers with an error."""


class ChatEngine(Protocol):
    name: str

    def stream(
        self, messages: list[ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        """Yield the reply piece by piece; stop early once ``cancelled`` is set."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class InterruptibleEngine(Protocol):
    def interrupt(self, cancelled: threading.Event) -> None:
        """Stop now, mid-computation, the stream that ``cancelled`` belongs to (any
        thread); a no-op if it is not the one computing."""
        ...


@runtime_checkable
class UrgentEngine(Protocol):
    def hurry(self, cancelled: threading.Event) -> None:
        """Evaluate the prompt of the stream that ``cancelled`` belongs to on more
        threads: someone waits on its reply. Call before the stream starts."""
        ...


def warm_up(engine: ChatEngine, system_prompt: str = "") -> None:
    """One short completion, so the first real request is not the slow one (the first
    call of a llama.cpp process is ~10x slower; a remote server proves it is there).
    With the conversation's system prompt, llama.cpp keeps that prefix evaluated: the
    first real reply skips ~60 tokens of prompt work."""
    prompt = [ChatMessage("system", system_prompt)] if system_prompt else []
    for _ in engine.stream([*prompt, ChatMessage("user", "Say hi.")], 4, threading.Event()):
        pass


def as_dicts(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """OpenAI-style messages; an interrupted assistant turn ends in "..." so the
    model sees it was cut off rather than believing it said all of it."""
    return [
        {"role": m.role, "content": (m.content.rstrip() + "...") if m.interrupted else m.content}
        for m in messages
    ]


class _End:
    """Queue marker: the worker finished (``error`` set if it failed)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


_CANCELLED = object()


class ThreadedStream:
    """Runs ``engine.stream`` in a thread; iterate it asynchronously.

    ``cancel()`` stops the iteration immediately (even mid-wait) and asks the
    engine to stop; ``finished`` completes when the worker thread has returned,
    i.e. when the engine is free for the next request. With ``hold_after`` the
    worker stops after that many pieces until ``release()``: the engine computes
    nothing meanwhile. ``urgent``: someone waits on the reply (an ``UrgentEngine``
    then evaluates its prompt on more threads).
    """

    def __init__(
        self,
        engine: ChatEngine,
        messages: list[ChatMessage],
        max_tokens: int,
        hold_after: int = 0,
        *,
        urgent: bool = False,
    ) -> None:
        self.cancelled = threading.Event()
        if urgent and isinstance(engine, UrgentEngine):
            engine.hurry(self.cancelled)
        self._hold_after = hold_after
        self._released = threading.Event()
        if hold_after <= 0:
            self._released.set()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._engine = engine
        self._messages = messages
        self._max_tokens = max_tokens
        self.finished: asyncio.Future[None] = self._loop.run_in_executor(None, self._work)

    def _put(self, item: object) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _work(self) -> None:
        end = _End()
        try:
            pieces = self._engine.stream(self._messages, self._max_tokens, self.cancelled)
            for count, piece in enumerate(pieces, 1):
                if self.cancelled.is_set():
                    break
                self._put(piece)
                if count == self._hold_after:
                    self._released.wait()
        except Exception as exc:  # reported to the reader, which owns error handling
            end = _End(exc)
        finally:
            self._put(end)

    def release(self) -> None:
        """Go on generating past ``hold_after``."""
        self._released.set()

    def cancel(self) -> None:
        """Stop now: the reader sees no further piece. Call on the event loop."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            if isinstance(self._engine, InterruptibleEngine):
                self._engine.interrupt(self.cancelled)
            self._released.set()
            self._queue.put_nowait(_CANCELLED)

    def __aiter__(self) -> ThreadedStream:
        return self

    async def __anext__(self) -> str:
        if self.cancelled.is_set():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _CANCELLED or self.cancelled.is_set():
            raise StopAsyncIteration
        if isinstance(item, _End):
            if item.error is not None:
                raise EngineError(str(item.error) or type(item.error).__name__) from item.error
            raise StopAsyncIteration
        assert isinstance(item, str)
        return item
