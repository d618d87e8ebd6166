"""The tts service on the bus: TextChunk in, AudioChunks out, Cancel and session ends obeyed."""

from __future__ import annotations

import asyncio
import logging

from proto.messages import AudioChunk, Cancel, SessionEnded, SessionStarted, TextChunk
from proto.subjects import AUDIO_OUT, CONTROL, SESSION, TTS_REQUEST
from services.common.bus import Bus
from services.common.probes import Readiness
from services.common.runner import Stop, main
from services.tts.config import Settings
from services.tts.engine import SpeechSynthesizer, load_piper
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

    async def publish(message: AudioChunk) -> None:
        await bus.publish(AUDIO_OUT, message)

    speaker = Speaker(
        synthesizer,
        publish,
        bus.next_seq,
        lambda reason: bus.count_drop(TTS_REQUEST, reason),
        max_chunk_ms=settings.max_chunk_ms,
        parallel=settings.parallel,
        service=SERVICE,
    )

    async def on_request(message: TextChunk, _subject: str) -> None:
        speaker.submit(message)

    async def on_control(message: Cancel, _subject: str) -> None:
        speaker.cancel(message.session_id, message.turn_id)

    async def on_session(message: SessionStarted | SessionEnded, _subject: str) -> None:
        if isinstance(message, SessionEnded):
            await speaker.end_session(message.session_id)
            bus.forget_session(message.session_id)
        else:
            speaker.session_started(message.session_id)

    # Separate subscriptions: a Cancel never waits behind queued requests.
    subscriptions = [
        await bus.subscribe(TTS_REQUEST, on_request),
        await bus.subscribe(CONTROL, on_control),
        await bus.subscribe(SESSION, on_session),
    ]
    log.info(
        "serving %s at %d Hz, pieces of at most %d ms",
        TTS_REQUEST.base,
        synthesizer.sample_rate,
        settings.max_chunk_ms,
    )

    async def stop() -> None:
        for subscription in subscriptions:
            await subscription.unsubscribe()
        await speaker.close()

    return stop


def run() -> None:
    main(SERVICE, Settings(), start)
