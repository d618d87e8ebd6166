"""Per-session speech workers: order, cancellation and piece-by-piece publishing.

No NATS here: the service adapter feeds requests, cancels and session ends in
and gives a ``publish`` callable for the AudioChunks.

Each session has one asyncio worker draining a FIFO queue, so the chunks of a
turn come out in the order they were sent and one session's long synthesis never
holds up another (syntheses run in a thread pool). A turn is dropped once it is
cancelled (Cancel for it or a newer turn) or superseded (a newer turn's chunk
arrived): queued chunks are skipped and a running synthesis stops publishing at
the next piece.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import trace

from proto.messages import AudioChunk, TextChunk
from services.common import metrics, telemetry
from services.tts.engine import SpeechSynthesizer
from services.tts.split import split_pcm, trim_leading_silence

log = logging.getLogger(__name__)

Publish = Callable[[AudioChunk], Awaitable[None]]
NextSeq = Callable[[str], int]
CountDrop = Callable[[str], None]

# Only a reply's first chunk: later chunks queue behind the earlier ones' synthesis by
# design, their wait says nothing about how soon the reply is heard.
FIRST_AUDIO = metrics.latency_histogram(
    "tts_first_audio", "A reply's first TextChunk received to its first audio piece published"
)
# Session ids remembered after SessionEnded, so late chunks do not revive a worker.
ENDED_MEMORY = 4096


@dataclass
class _Request:
    chunk: TextChunk
    received_at: float
    # The trace of the message that asked for this chunk: the session's worker task
    # was started by an earlier message, so its own context belongs to another turn.
    trace_context: otel_context.Context = field(default_factory=otel_context.get_current)


@dataclass
class _Session:
    queue: asyncio.Queue[_Request] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    cancelled_upto: int = -1
    newest_turn: int = -1

    def drop_reason(self, turn_id: int) -> str | None:
        """Why work for ``turn_id`` must not go on, or None."""
        if turn_id <= self.cancelled_upto:
            return "cancelled"
        if turn_id < self.newest_turn:
            return "stale"
        return None


class Speaker:
    """Turns TextChunks into AudioChunks of at most ``max_chunk_ms``, per session in order."""

    def __init__(
        self,
        synthesizer: SpeechSynthesizer,
        publish: Publish,
        next_seq: NextSeq,
        count_drop: CountDrop,
        *,
        max_chunk_ms: int = 200,
        parallel: int = 2,
        service: str = "tts",
        engine: str = "piper",
    ) -> None:
        self._synth = synthesizer
        self._publish = publish
        self._next_seq = next_seq
        self._count_drop = count_drop
        self._max_chunk_ms = max_chunk_ms
        self._service = service
        self._engine = engine
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="tts-synth")
        self._sessions: dict[str, _Session] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()

    # --- inputs from the bus ----------------------------------------------

    def submit(self, chunk: TextChunk) -> None:
        """Queue ``chunk`` on its session's worker (starting one if needed)."""
        received_at = time.monotonic()
        if chunk.session_id in self._ended:
            self._count_drop("session_ended")
            return
        session = self._session(chunk.session_id)
        reason = session.drop_reason(chunk.turn_id)
        if reason:
            self._count_drop(reason)
            return
        session.newest_turn = max(session.newest_turn, chunk.turn_id)
        session.queue.put_nowait(_Request(chunk, received_at))
        if session.task is None:
            session.task = asyncio.create_task(self._work(session), name=f"tts-{chunk.session_id}")

    def cancel(self, session_id: str, turn_id: int) -> None:
        """Cancel ``turn_id`` and every older turn of the session."""
        if session_id in self._ended:
            return
        session = self._session(session_id)
        session.cancelled_upto = max(session.cancelled_upto, turn_id)

    def session_started(self, session_id: str) -> None:
        self._ended.pop(session_id, None)

    async def end_session(self, session_id: str) -> None:
        """Forget the session: its queued chunks are dropped and its worker stops."""
        self._ended[session_id] = None
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)
        await self._stop(session_id)

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self._stop(session_id)
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def engine(self) -> str:
        return self._engine

    @property
    def pending(self) -> int:
        """TextChunks waiting for synthesis, over every session (the queue-depth gauge)."""
        return sum(session.queue.qsize() for session in self._sessions.values())

    # --- the worker ---------------------------------------------------------

    def _session(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session()
            metrics.ACTIVE_SESSIONS.labels(self._service).set(len(self._sessions))
        return session

    async def _stop(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        metrics.ACTIVE_SESSIONS.labels(self._service).set(len(self._sessions))
        if session is None or session.task is None:
            return
        session.task.cancel()
        await asyncio.gather(session.task, return_exceptions=True)

    async def _work(self, session: _Session) -> None:
        while True:
            request = await session.queue.get()
            reason = session.drop_reason(request.chunk.turn_id)
            if reason:
                self._count_drop(reason)
                continue
            token = otel_context.attach(request.trace_context)
            try:
                await self._speak(session, request)
            except Exception:  # e.g. the bus is gone: keep the worker for the next chunk
                self._count_drop("handler_error")
                log.exception(
                    "speaking chunk %d of turn %d failed", request.chunk.index, request.chunk.turn_id
                )
            finally:
                otel_context.detach(token)

    async def _speak(self, session: _Session, request: _Request) -> None:
        """One span per synthesis, in the trace of the TextChunk that asked for it; the
        AudioChunks are published inside it."""
        chunk = request.chunk
        with telemetry.tracer().start_as_current_span(
            "tts synthesize", attributes=self._span_attributes(chunk), record_exception=False
        ) as span:
            parts = await self._speak_pieces(session, request)
            span.set_attribute("voice_agent.parts", parts)

    def _span_attributes(self, chunk: TextChunk) -> dict[str, str | int | bool]:
        return {
            "voice_agent.session_id": chunk.session_id,
            "voice_agent.turn_id": chunk.turn_id,
            "voice_agent.chunk_index": chunk.index,
            "voice_agent.last": chunk.last,
            "voice_agent.engine": self._engine,
            **telemetry.text_attributes("voice_agent.text", chunk.text),
        }

    async def _speak_pieces(self, session: _Session, request: _Request) -> int:
        """Publish the chunk's audio piece by piece, holding one piece back so the
        last one can carry ``final_part``; returns the pieces published."""
        chunk = request.chunk
        part = 0
        held: bytes | None = None
        async with aclosing(self._pieces(chunk.text, opens_reply=chunk.index == 0)) as pieces:
            async for piece in pieces:
                if held is not None:
                    if session.drop_reason(chunk.turn_id):
                        return part
                    await self._emit(chunk, part, held, False, request.received_at)
                    part += 1
                    # A Cancel arriving mid-utterance gets its turn between pieces.
                    await asyncio.sleep(0)
                held = piece
        if session.drop_reason(chunk.turn_id):
            return part
        # No audio (empty text, unspeakable, engine failure) still closes the chunk,
        # so the edge is not left waiting for it.
        await self._emit(chunk, part, held or b"", True, request.received_at)
        return part + 1

    async def _pieces(self, text: str, *, opens_reply: bool) -> AsyncGenerator[bytes, None]:
        """Pieces of at most max_chunk_ms, as the engine produces audio in a thread;
        a reply starts at its first sound, not at the engine's leading silence."""
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        rate = self._synth.sample_rate
        try:
            audio = await loop.run_in_executor(self._executor, _open, self._synth, text)
            while (pcm := await loop.run_in_executor(self._executor, next, audio, None)) is not None:
                if opens_reply:
                    pcm, opens_reply = trim_leading_silence(pcm, rate), False
                for piece in split_pcm(pcm, rate, self._max_chunk_ms):
                    yield piece
        except Exception as exc:  # the engine failed on this text: the service goes on
            metrics.ENGINE_ERRORS.labels(self._service, self._engine).inc()
            # The generator runs in _speak's task: the current span is the synthesis'.
            span = trace.get_current_span()
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(trace.StatusCode.ERROR)
            log.exception("synthesis failed for %s", telemetry.loggable_text(text))

    async def _emit(self, chunk: TextChunk, part: int, pcm: bytes, final: bool, received_at: float) -> None:
        message = AudioChunk(
            session_id=chunk.session_id,
            turn_id=chunk.turn_id,
            seq=self._next_seq(chunk.session_id),
            chunk_index=chunk.index,
            part=part,
            pcm=pcm,
            sample_rate=self._synth.sample_rate,
            text=chunk.text if part == 0 else "",
            final_part=final,
            last_chunk=chunk.last and final,
            allow_interruptions=chunk.allow_interruptions,
        )
        await self._publish(message)
        if part == 0 and pcm and chunk.index == 0:
            FIRST_AUDIO.labels(self._service).observe(time.monotonic() - received_at)


def _open(synthesizer: SpeechSynthesizer, text: str) -> Iterator[bytes]:
    # Runs in the pool: an engine may do its work eagerly when called.
    return iter(synthesizer.synthesize(text))
