"""Turning LlmRequests into replies: one generation at a time, cancellable.

Plain asyncio logic with no NATS import: it publishes through anything with
the Bus's ``publish`` / ``next_seq`` (service.py passes the Bus).

Per session it remembers the newest turn and the newest cancelled turn, so a
newer request supersedes an older one, a Cancel(N) stops turns <= N, and a
request that arrives already stale is refused. A cancelled reply publishes
nothing more for its turn except ``LlmDone(cancelled=True)``.

Primes are hints the model takes when it is free (services/llm/primer.py); a
prime with ``ahead`` starts a draft (services/llm/draft.py) that the request
with the same prompt adopts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

import msgspec
from opentelemetry import trace
from prometheus_client import Counter

from proto.messages import ChatMessage, LlmDone, LlmPrime, LlmRequest, LlmToken, TextChunk
from proto.subjects import LLM_STREAM, TTS_REQUEST, Channel
from services.common import metrics, telemetry
from services.llm.chunker import CHUNK_MAX_WORDS, FIRST_CHUNK_WORDS, Chunker
from services.llm.draft import DRAFTS, Draft
from services.llm.engine import ChatEngine, EngineError, ThreadedStream
from services.llm.primer import Primer, PrimingEngine

log = logging.getLogger(__name__)

SERVICE = "llm"
FIRST_TOKEN = metrics.latency_histogram("llm_first_token", "LlmRequest received to first token")
CANCEL_STOP = metrics.latency_histogram("llm_cancel_stop", "Cancel received to the engine stopped")
TOKENS = Counter(f"{metrics.PREFIX}_llm_tokens", "Tokens generated", ["service"])


class Publisher(Protocol):
    async def publish(self, channel: Channel, message: msgspec.Struct, *, traced: bool = True) -> None: ...

    def next_seq(self, session_id: str) -> int: ...


class _Ids(TypedDict):
    session_id: str
    turn_id: int
    seq: int


class _Reply:
    """One request's generation, from queued to done."""

    def __init__(self, request: LlmRequest) -> None:
        self.request = request
        self.received = time.monotonic()
        self.stopped = asyncio.Event()  # set by a cancel, before or during generation
        self.cancel_requested: float | None = None
        self.stream: ThreadedStream | None = None
        self.draft: Draft | None = None  # generated ahead with this request's prompt
        self.drafted = False  # the draft was adopted: its stream is this reply's

    @property
    def cancelled(self) -> bool:
        return self.stopped.is_set()

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancel_requested = time.monotonic()
        self.stopped.set()
        if self.stream is not None:
            self.stream.cancel()


@dataclass
class _Session:
    newest_turn: int = -1
    cancelled_upto: int = -1
    current: _Reply | None = None


@dataclass
class _Progress:
    """What a reply has produced so far."""

    pieces: list[str] = field(default_factory=list)
    tokens: int = 0
    chunks: int = 0
    first_token_at: float = 0.0
    error: str = ""


class Replier:
    def __init__(
        self,
        engine: ChatEngine,
        out: Publisher,
        *,
        first_chunk_words: int = FIRST_CHUNK_WORDS,
        chunk_max_words: int = CHUNK_MAX_WORDS,
        draft_tokens: int = 0,
        draft_timeout_s: float = 2.0,
    ) -> None:
        """``draft_tokens`` > 0: a prime with ``ahead`` starts a draft of that many
        tokens (if the engine primes), dropped if no request adopts it within
        ``draft_timeout_s``."""
        self._engine = engine
        self._out = out
        self._first_chunk_words = first_chunk_words
        self._chunk_max_words = chunk_max_words
        self._model = asyncio.Lock()  # one generation at a time through the model
        self._waiting = 0  # replies waiting for the model
        self._replying = 0  # replies waiting for the model or generating
        self._draft_tokens = draft_tokens
        self._draft_timeout_s = draft_timeout_s
        self._draft: Draft | None = None
        self._sessions: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._primer: Primer | None = None
        if isinstance(engine, PrimingEngine):
            self._primer = Primer(engine, self._model, lambda: self._waiting > 0)

    @property
    def waiting(self) -> int:
        """Requests accepted and waiting for the model (the queue-depth gauge)."""
        return self._waiting

    def submit(self, request: LlmRequest) -> bool:
        """Start replying in a task; False (nothing done) if the turn is stale."""
        session = self._session(request.session_id)
        if request.turn_id < session.newest_turn or request.turn_id <= session.cancelled_upto:
            return False
        session.newest_turn = request.turn_id
        reply = _Reply(request)
        draft, self._draft = self._draft, None
        if draft is not None and draft.matches(request):
            reply.draft = draft
        elif draft is not None:
            draft.drop()
        self._stop_priming()
        if session.current is not None:
            session.current.cancel()  # superseded by the newer request
        session.current = reply
        task = asyncio.create_task(self._run(reply, session), name=f"llm {request.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def prime(self, prime: LlmPrime) -> bool:
        """Evaluate ``prime`` ahead when the model is free (if the engine can); False
        (nothing done) if its turn has had its request already."""
        session = self._session(prime.session_id)
        if prime.turn_id <= max(session.newest_turn, session.cancelled_upto):
            return False
        self._drop_draft(prime.session_id)  # newer words
        if self._primer is None:
            return True
        if not (prime.ahead and self._draft_tokens > 0):
            self._primer.offer(prime)  # it runs once the model is free
        elif self._replying or self._draft is not None:
            DRAFTS.labels(SERVICE, "busy").inc()  # a reply or another session's draft has the model
        else:
            self._primer.stop()
            self._draft = Draft(
                prime,
                lambda hold: self._stream(prime.messages, prime.max_tokens, hold),
                self._model,
                self._draft_timeout_s,
                self._draft_tokens,
            )
        return True

    def cancel(self, session_id: str, turn_id: int) -> None:
        """Stop the session's reply for ``turn_id`` or older, now and later."""
        session = self._session(session_id)
        session.cancelled_upto = max(session.cancelled_upto, turn_id)
        if session.current is not None and session.current.request.turn_id <= turn_id:
            session.current.cancel()
        self._drop_draft(session_id, turn_id)

    def end_session(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None and session.current is not None:
            session.current.cancel()
        self._drop_draft(session_id)
        metrics.ACTIVE_SESSIONS.labels(SERVICE).set(len(self._sessions))

    async def close(self) -> None:
        for session_id in list(self._sessions):
            self.end_session(session_id)
        draft = self._draft
        self._drop_draft()
        if draft is not None:
            await asyncio.gather(draft.task, return_exceptions=True)
        if self._primer is not None:
            await self._primer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _stop_priming(self) -> None:
        """A request wants the model: hints make way."""
        self._drop_draft()
        if self._primer is not None:
            self._primer.stop()

    def _drop_draft(self, session_id: str | None = None, upto_turn: float = math.inf) -> None:
        """Drop the draft, if of ``session_id`` (any session if None) and turn <= ``upto_turn``."""
        draft = self._draft
        if draft is None or draft.prime.turn_id > upto_turn:
            return
        if session_id is None or draft.prime.session_id == session_id:
            draft.drop()
            self._draft = None

    def _stream(
        self, messages: list[ChatMessage], max_tokens: int, hold_after: int = 0, *, urgent: bool = False
    ) -> ThreadedStream:
        return ThreadedStream(self._engine, messages, max_tokens, hold_after, urgent=urgent)

    def _session(self, session_id: str) -> _Session:
        if session_id not in self._sessions:
            self._sessions[session_id] = _Session()
            metrics.ACTIVE_SESSIONS.labels(SERVICE).set(len(self._sessions))
        return self._sessions[session_id]

    async def _run(self, reply: _Reply, session: _Session) -> None:
        self._replying += 1
        try:
            drafted = await reply.draft.adopt() if reply.draft is not None else None
            if drafted is not None or await self._acquire_model(reply):
                try:
                    await self._generate(reply, drafted)
                finally:
                    self._model.release()
            else:
                await self._publish_done(reply, _Progress())
        except Exception:  # a publish failed: log it, keep serving other requests
            log.exception("reply to %s turn %d failed", reply.request.session_id, reply.request.turn_id)
        finally:
            self._replying -= 1
            if session.current is reply:
                session.current = None

    async def _acquire_model(self, reply: _Reply) -> bool:
        """Wait for the model unless the reply is cancelled meanwhile."""
        acquire = asyncio.ensure_future(self._model.acquire())
        stopped = asyncio.ensure_future(reply.stopped.wait())
        self._waiting += 1
        self._stop_priming()  # a prime that started since submit() makes way too
        try:
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting -= 1
        stopped.cancel()
        if not reply.cancelled:
            return True
        if acquire.done() and not acquire.cancelled():
            self._model.release()
        else:
            acquire.cancel()  # asyncio.Lock hands the wake-up on to the next waiter
        return False

    async def _generate(self, reply: _Reply, drafted: ThreadedStream | None) -> None:
        """Relay ``drafted`` (adopted from a draft) or a new generation."""
        request = reply.request
        # Urgent: the user waits on it. A draft's prompt was evaluated beside stt's final.
        stream = drafted or self._stream(request.messages, request.max_tokens, urgent=True)
        reply.stream, reply.drafted = stream, drafted is not None
        if reply.cancelled:  # cancelled between getting the model and starting
            stream.cancel()
        try:
            await self._stream_reply(reply, stream)
        finally:
            # After a failed publish the worker may still be generating: stop it.
            # The model is free only once the worker thread has returned.
            stream.cancel()
            await stream.finished
        if reply.cancel_requested is not None:
            CANCEL_STOP.labels(SERVICE).observe(time.monotonic() - reply.cancel_requested)

    async def _stream_reply(self, reply: _Reply, stream: ThreadedStream) -> None:
        progress = _Progress()
        # One span per generation, a child of the LlmRequest's delivery (this task
        # started in that handler); tokens, chunks and LlmDone are published inside it.
        attributes = {
            **self._span_attributes(reply.request),
            "voice_agent.drafted": reply.drafted,
        }
        with telemetry.tracer().start_as_current_span(
            "llm generate", attributes=attributes, record_exception=False
        ) as span:
            try:
                await self._relay(reply, stream, progress)
            except EngineError as exc:
                progress.error = str(exc)[:500]
                metrics.ENGINE_ERRORS.labels(SERVICE, self._engine.name).inc()
                # The class only: an engine's message may quote the server's answer.
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(trace.StatusCode.ERROR)
                log.warning("engine %s failed: %s", self._engine.name, progress.error)
            span.set_attributes(
                {
                    "voice_agent.tokens": progress.tokens,
                    "voice_agent.chunks": progress.chunks,
                    "voice_agent.cancelled": reply.cancelled,
                    **telemetry.text_attributes("voice_agent.reply", "".join(progress.pieces)),
                }
            )
            await self._publish_done(reply, progress)

    def _span_attributes(self, request: LlmRequest) -> dict[str, str | int | bool]:
        return {
            "voice_agent.session_id": request.session_id,
            "voice_agent.turn_id": request.turn_id,
            "voice_agent.engine": self._engine.name,
            "voice_agent.speculative": request.speculative,
            "voice_agent.max_tokens": request.max_tokens,
            "voice_agent.history_messages": len(request.messages),
        }

    async def _relay(self, reply: _Reply, stream: ThreadedStream, progress: _Progress) -> None:
        """Publish tokens and chunks as they come; end the speech unless cancelled."""
        request = reply.request
        chunker = Chunker(self._first_chunk_words, self._chunk_max_words)
        async for piece in stream:
            if progress.tokens == 0:
                FIRST_TOKEN.labels(SERVICE).observe(time.monotonic() - reply.received)
                progress.first_token_at = time.time()
            token = LlmToken(**self._ids(request), text=piece, index=progress.tokens)
            # The bus spans only the first token (index 0); the rest carry the context alone.
            await self._out.publish(LLM_STREAM, token)
            progress.tokens += 1
            progress.pieces.append(piece)
            TOKENS.labels(SERVICE).inc()
            for text in chunker.push(piece):
                await self._publish_chunk(reply, progress, text, last=False)
        await self._publish_chunk(reply, progress, chunker.flush(), last=True)

    async def _publish_chunk(self, reply: _Reply, progress: _Progress, text: str, *, last: bool) -> None:
        if reply.cancelled:
            return
        chunk = TextChunk(**self._ids(reply.request), text=text, index=progress.chunks, last=last)
        await self._out.publish(TTS_REQUEST, chunk)
        progress.chunks += 1

    async def _publish_done(self, reply: _Reply, progress: _Progress) -> None:
        if progress.error and not reply.cancelled:
            # Close the turn's speech so tts and the edge do not wait for more.
            await self._publish_chunk(reply, progress, "", last=True)
        done = LlmDone(
            **self._ids(reply.request),
            text="".join(progress.pieces),
            tokens=progress.tokens,
            first_token_at=progress.first_token_at,
            cancelled=reply.cancelled,
            error=progress.error,
        )
        await self._out.publish(LLM_STREAM, done)

    def _ids(self, request: LlmRequest) -> _Ids:
        return {
            "session_id": request.session_id,
            "turn_id": request.turn_id,
            "seq": self._out.next_seq(request.session_id),
        }
