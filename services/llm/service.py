"""The llm service's bus adapter: wires subscriptions to the Replier.

Requests arrive through the queue group "llm" (any replica may take one);
Cancel and SessionEnded have subscriptions of their own so they never wait
behind a request. Handlers only hand work over: generation runs in tasks.
Draining (SIGTERM), the replica leaves the queue group, so new requests go to
the other replicas, and finishes the replies it has accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

from pydantic import ValidationError

from proto.messages import Cancel, LlmPrime, LlmRequest, SessionEnded, SessionStarted
from proto.subjects import CONTROL, LLM_REQUEST, SESSION
from services.common import metrics
from services.common.bus import Bus
from services.common.errors import StartupError
from services.common.inflight import InFlight, leave_queue_and_finish
from services.common.probes import Readiness
from services.common.runner import Graceful, Stop, main
from services.llm.config import Settings, load_settings
from services.llm.engine import ChatEngine
from services.llm.engine import warm_up as engine_warm_up
from services.llm.inflight import Key, NotingPublisher
from services.llm.replies import Replier

log = logging.getLogger(__name__)


def build_engine(settings: Settings) -> ChatEngine:
    """The configured engine, model loaded (blocking: run it in a thread)."""
    if settings.engine == "openai":
        from services.llm.openai_engine import OpenAICompatibleEngine

        return OpenAICompatibleEngine(
            settings.openai_base_url,
            settings.openai_model,
            api_key=settings.openai_api_key.get_secret_value(),
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            seed=settings.seed,
            timeout=settings.openai_timeout,
        )
    from services.llm.llama_engine import LlamaCppEngine
    from services.llm.model import configured_model

    path = configured_model(settings)
    log.info("loading %s", path)
    return LlamaCppEngine(
        path,
        context=settings.context,
        threads=settings.threads,
        threads_batch=settings.threads_batch or settings.threads,
        urgent_threads_batch=settings.request_threads_batch,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        seed=settings.seed,
    )


async def warm_up(engine: ChatEngine, system_prompt: str) -> None:
    started = time.monotonic()
    try:
        await asyncio.to_thread(engine_warm_up, engine, system_prompt)
    except Exception as exc:  # any failure here means the engine cannot serve
        raise StartupError(f"the {engine.name} engine failed its warm-up request: {exc}") from exc
    log.info("%s engine warmed up in %.0f ms", engine.name, (time.monotonic() - started) * 1000)


async def start_with(bus: Bus, settings: Settings, engine: ChatEngine | None = None) -> Stop:
    """Start on ``bus``; with ``engine`` given (tests), use it and leave it open."""
    owned = engine is None
    if engine is None:
        engine = await asyncio.to_thread(build_engine, settings)
    if settings.warmup:
        await warm_up(engine, settings.warmup_system_prompt)
    inflight: InFlight[Key] = InFlight()
    replier = Replier(
        engine,
        NotingPublisher(bus, inflight),
        first_chunk_words=settings.first_chunk_words,
        chunk_max_words=settings.chunk_max_words,
        draft_tokens=settings.draft_tokens,
        draft_timeout_s=settings.draft_timeout_s,
    )
    metrics.QUEUE_DEPTH.labels("llm", "requests").set_function(lambda: replier.waiting)
    metrics.count_engine_errors_from("llm", engine.name)

    async def on_request(message: LlmRequest | LlmPrime, _subject: str) -> None:
        if isinstance(message, LlmPrime):
            if not replier.prime(message):
                bus.count_drop(LLM_REQUEST, "stale")
            return
        if replier.submit(message):
            inflight.add((message.session_id, message.turn_id))
        else:
            bus.count_drop(LLM_REQUEST, "stale")

    async def on_control(message: Cancel, _subject: str) -> None:
        replier.cancel(message.session_id, message.turn_id)

    async def on_session(message: SessionStarted | SessionEnded, _subject: str) -> None:
        if isinstance(message, SessionEnded):
            replier.end_session(message.session_id)
            bus.forget_session(message.session_id)

    requests = await bus.subscribe(LLM_REQUEST, on_request)
    subscriptions = [
        requests,
        await bus.subscribe(CONTROL, on_control),
        await bus.subscribe(SESSION, on_session),
    ]

    async def drain(deadline: float) -> None:
        # Cancels still reach the replies that run to their end.
        await leave_queue_and_finish(requests, inflight, deadline, "repl(ies)", log)

    async def stop() -> None:
        for subscription in subscriptions:
            with contextlib.suppress(Exception):  # drained already, or the connection is closing
                await subscription.unsubscribe()
        await replier.close()
        if owned:
            await asyncio.to_thread(engine.close)

    return Graceful(stop, drain)


async def start(bus: Bus, readiness: Readiness) -> Stop:
    # The runner marks the service ready once this returns: the model is loaded and warm.
    return await start_with(bus, load_settings())


def run() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        # One line saying which variable is wrong, like every other start-up error.
        first = exc.errors()[0]
        name = "_".join(str(part) for part in first["loc"])
        name = name if name.isupper() else f"LLM_{name.upper()}"  # NATS_URL has no prefix
        print(f"llm: error: {name}: {first['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    main("llm", settings, start)
