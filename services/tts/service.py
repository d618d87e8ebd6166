"""The tts service on the bus: TextChunk in, AudioChunks out, Cancel and session ends obeyed.

Draining (SIGTERM), the replica leaves the queue group "tts", so new chunks go to
the other replicas, and speaks the chunks it has accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from proto.messages import AudioChunk, Cancel, SessionEnded, SessionStarted, TextChunk
from proto.subjects import AUDIO_OUT, CONTROL, SESSION, TTS_REQUEST
from services.common import metrics
from services.common.bus import Bus
from services.common.inflight import leave_queue_and_finish
from services.common.probes import Readiness
from services.common.runner import Graceful, Stop, main
from services.tts.config import Settings
from services.tts.engine import SpeechSynthesizer, load_piper
from services.tts.inflight import ChunksInFlight
from services.tts.speaker import Speaker

log = logging.getLogger(__name__)

SERVICE = "tts"


async def start(bus: Bus, readiness: Readiness) -> Stop:
    """Load and warm up the voice (in a thread: /healthz keeps answering), then serve."""
    settings = Settings()
    synthesizer = await asyncio.to_thread(load_piper, settings.model_path, settings.onnx_threads)
    return await serve(bus, settings, synthesizer)


async def serve(bus: Bus, settings: Settings, synthesizer: SpeechSynthesizer) -> Stop:
    """Subscribe with a ready ``synthesizer``; returns the coroutine that stops it all."""

    inflight = ChunksInFlight()
    drops = 0  # the Speaker drops a stale chunk inside submit(): not accepted, not waited for

    async def publish(message: AudioChunk) -> None:
        try:
            await bus.publish(AUDIO_OUT, message)
        finally:
            inflight.spoken(message)

    def count_drop(reason: str) -> None:
        nonlocal drops
        drops += 1
        bus.count_drop(TTS_REQUEST, reason)

    speaker = Speaker(
        synthesizer,
        publish,
        bus.next_seq,
        count_drop,
        max_chunk_ms=settings.max_chunk_ms,
        parallel=settings.parallel,
        service=SERVICE,
    )
    metrics.QUEUE_DEPTH.labels(SERVICE, "chunks").set_function(lambda: speaker.pending)
    metrics.count_engine_errors_from(SERVICE, speaker.engine)

    async def on_request(message: TextChunk, _subject: str) -> None:
        before = drops
        speaker.submit(message)
        if drops == before:
            inflight.accepted(message)

    async def on_control(message: Cancel, _subject: str) -> None:
        speaker.cancel(message.session_id, message.turn_id)
        inflight.cancelled(message.session_id, message.turn_id)

    async def on_session(message: SessionStarted | SessionEnded, _subject: str) -> None:
        if isinstance(message, SessionEnded):
            await speaker.end_session(message.session_id)
            inflight.ended(message.session_id)
            bus.forget_session(message.session_id)
        else:
            speaker.session_started(message.session_id)

    # Separate subscriptions: a Cancel never waits behind queued requests.
    requests = await bus.subscribe(TTS_REQUEST, on_request)
    subscriptions = [
        requests,
        await bus.subscribe(CONTROL, on_control),
        await bus.subscribe(SESSION, on_session),
    ]
    log.info(
        "serving %s at %d Hz, pieces of at most %d ms",
        TTS_REQUEST.base,
        synthesizer.sample_rate,
        settings.max_chunk_ms,
    )

    async def drain(deadline: float) -> None:
        await leave_queue_and_finish(requests, inflight, deadline, "chunk(s)", log)

    async def stop() -> None:
        for subscription in subscriptions:
            with contextlib.suppress(Exception):  # drained already, or the connection is closing
                await subscription.unsubscribe()
        await speaker.close()

    return Graceful(stop, drain)


def run() -> None:
    main(SERVICE, Settings(), start)
