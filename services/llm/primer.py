"""Evaluating a prompt ahead of its request, while the model has nothing else to do.

turns sends an ``LlmPrime`` (the history and the user's words so far, from a partial
transcript) at every partial (services/turns/conversation/session.py). When the speculative
final comes, its request shares that prompt up to the last words, so the model
starts generating almost at once instead of first evaluating the whole user message
(8 tokens left to evaluate instead of 52 in tests/test_llm_service.py).

A prime is a hint and never delays a reply: only the newest one waits, it runs
only when no reply holds or waits for the model, and a request that arrives
stops it at once, mid-evaluation (``LlamaCppEngine.interrupt``). It runs on a
thread of its own at the lowest CPU priority (nice 19): the user is still
speaking or has just paused, and stt's decode, the edge (and a browser on the
same machine) must not wait for a guess.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

from prometheus_client import Counter

from proto.messages import ChatMessage, LlmPrime
from services.common import metrics, priority, telemetry

log = logging.getLogger(__name__)

SERVICE = "llm"
PRIMES = Counter(
    f"{metrics.PREFIX}_llm_primes",
    "LlmPrime hints by outcome: done, stopped (a request took the model), busy (the "
    "model was generating), replaced (a newer one or a request came first)",
    ["service", "outcome"],
)
PRIMED_TOKENS = Counter(f"{metrics.PREFIX}_llm_primed_tokens", "Prompt tokens evaluated ahead", ["service"])


@runtime_checkable
class PrimingEngine(Protocol):
    def prime(self, messages: list[ChatMessage], max_tokens: int, cancelled: threading.Event) -> int:
        """Evaluate the prompt into the engine's cache; the tokens evaluated."""
        ...

    def interrupt(self, cancelled: threading.Event) -> None:
        """Stop at once the prime that ``cancelled`` belongs to, mid-evaluation
        (called from the event loop); a no-op if it is not the one evaluating."""
        ...


class Primer:
    """Runs the newest prime when the model is free; ``stop`` makes way for a request."""

    def __init__(self, engine: PrimingEngine, model: asyncio.Lock, busy: Callable[[], bool]) -> None:
        self._engine = engine
        self._model = model
        self._busy = busy  # a reply holds the model or waits for it
        self._pending: LlmPrime | None = None
        self._running: threading.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # The last to get a core: the thread and what it starts run at nice 19.
        self._thread = ThreadPoolExecutor(
            1,
            thread_name_prefix="llm-prime",
            initializer=functools.partial(priority.lower_this_thread, priority.LOWEST),
        )

    def offer(self, prime: LlmPrime) -> None:
        if self._pending is not None:
            PRIMES.labels(SERVICE, "replaced").inc()
        self._pending = prime
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run_pending(), name="llm prime")

    def stop(self) -> None:
        """A request wants the model: drop the waiting prime, stop the running one."""
        if self._pending is not None:
            PRIMES.labels(SERVICE, "replaced").inc()
            self._pending = None
        if self._running is not None:
            self._running.set()
            # At nice 19 the slice in progress could take long to finish: stop it now.
            self._engine.interrupt(self._running)

    async def close(self) -> None:
        self.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        self._thread.shutdown(wait=False)

    async def _run_pending(self) -> None:
        while self._pending is not None:
            prime, self._pending = self._pending, None
            if self._busy() or self._model.locked():
                PRIMES.labels(SERVICE, "busy").inc()
                continue  # the agent is answering: a later partial brings a fresh prime
            async with self._model:
                await self._run(prime)

    async def _run(self, prime: LlmPrime) -> None:
        cancelled = threading.Event()
        self._running = cancelled
        started = time.monotonic()
        attributes: dict[str, str | int] = {
            "voice_agent.session_id": prime.session_id,
            "voice_agent.turn_id": prime.turn_id,
        }
        with telemetry.tracer().start_as_current_span("llm prime", attributes=attributes) as span:
            try:
                evaluated = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self._engine.prime, prime.messages, prime.max_tokens, cancelled
                )
            except Exception as exc:  # a failed hint costs nothing but the hint
                log.warning("priming failed: %s", exc)
                span.set_attribute("error.type", type(exc).__name__)
                return
            finally:
                self._running = None
            outcome = "stopped" if cancelled.is_set() else "done"
            span.set_attributes({"voice_agent.tokens": evaluated, "voice_agent.outcome": outcome})
        PRIMES.labels(SERVICE, outcome).inc()
        PRIMED_TOKENS.labels(SERVICE).inc(evaluated)
        log.debug("primed %d tokens in %.0f ms (%s)", evaluated, (time.monotonic() - started) * 1000, outcome)
