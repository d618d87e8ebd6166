"""Helpers for the llm tests (no tests here): a bus client playing turns and tts,
and an OpenAI-compatible server double that speaks the exact SSE wire format."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proto.messages import Cancel, ChatMessage, LlmDone, LlmRequest, LlmToken, TextChunk
from proto.subjects import CONTROL, LLM_REQUEST, LLM_STREAM, TTS_REQUEST
from services.common.bus import Bus
from tests.support import free_port

REPLY_TIMEOUT_S = 30.0
PERSONA = ChatMessage(
    "system",
    "You are Ava, a friendly voice assistant. Answer briefly in plain spoken English, no lists.",
)


@dataclass
class Turn:
    """Everything the llm service sent for one turn, with arrival times (monotonic)."""

    tokens: list[tuple[float, LlmToken]] = field(default_factory=list)
    chunks: list[tuple[float, TextChunk]] = field(default_factory=list)
    done: tuple[float, LlmDone] | None = None

    def text(self) -> str:
        return "".join(t.text for _, t in self.tokens)

    def late(self) -> list[Any]:
        """Tokens or chunks the service sent after its LlmDone (by ``seq``)."""
        if self.done is None:
            return []
        sent = [m for _, m in self.tokens] + [m for _, m in self.chunks]
        return [m for m in sent if m.seq > self.done[1].seq]


class Client:
    """The llm service's neighbours for one session: sends requests and
    cancels like turns, receives tokens and chunks like turns and tts.

    Tokens and chunks come on two subscriptions, which nats-py runs in two
    tasks, so their arrival order is not the send order: the service's
    per-session ``seq`` is, and the client orders by it.
    """

    def __init__(self, bus: Bus, session_id: str) -> None:
        self.bus = bus
        self.session_id = session_id
        self.turns: defaultdict[int, Turn] = defaultdict(Turn)
        self.seqs: set[int] = set()
        self._changed = asyncio.Event()

    async def start(self) -> Client:
        await self.bus.subscribe(LLM_STREAM, self._on_stream, session_id=self.session_id)
        # No queue group: every client sees every chunk (it keeps its session's).
        await self.bus.subscribe(TTS_REQUEST, self._on_chunk, queue="")
        return self

    def _seen(self, seq: int) -> None:
        self.seqs.add(seq)
        self._changed.set()

    async def _on_stream(self, message: LlmToken | LlmDone, _subject: str) -> None:
        turn = self.turns[message.turn_id]
        if isinstance(message, LlmToken):
            turn.tokens.append((time.monotonic(), message))
        else:
            turn.done = (time.monotonic(), message)
        self._seen(message.seq)

    async def _on_chunk(self, message: TextChunk, _subject: str) -> None:
        if message.session_id == self.session_id:
            self.turns[message.turn_id].chunks.append((time.monotonic(), message))
            self._seen(message.seq)

    async def _until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def done(self, turn_id: int) -> LlmDone:
        """The turn's LlmDone, once everything the service sent before it is in."""
        turn = self.turns[turn_id]
        await self._until(lambda: turn.done is not None)
        assert turn.done is not None
        done = turn.done[1]
        await self._until(lambda: self.seqs.issuperset(range(1, done.seq)))
        return done

    async def tokens(self, turn_id: int, count: int) -> None:
        """Wait until ``count`` tokens (or the end) of the turn have arrived."""
        turn = self.turns[turn_id]
        await self._until(lambda: len(turn.tokens) >= count or turn.done is not None)

    async def request(
        self, turn_id: int, user: str, history: tuple[ChatMessage, ...] = (), max_tokens: int = 150
    ) -> float:
        messages = [PERSONA, *history, ChatMessage("user", user)]
        request = LlmRequest(
            session_id=self.session_id,
            turn_id=turn_id,
            seq=self.bus.next_seq(self.session_id),
            messages=messages,
            max_tokens=max_tokens,
        )
        sent = time.monotonic()
        await self.bus.publish(LLM_REQUEST, request)
        return sent

    async def cancel(self, turn_id: int) -> float:
        cancel = Cancel(session_id=self.session_id, turn_id=turn_id, seq=self.bus.next_seq(self.session_id))
        sent = time.monotonic()
        await self.bus.publish(CONTROL, cancel)
        return sent


def sse_chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` event exactly as OpenAI sends it."""
    event = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


class FakeOpenAI:
    """A POST /v1/chat/completions server that streams ``reply`` as OpenAI does."""

    def __init__(self, reply: list[str]) -> None:
        self.reply = reply
        self.delay = 0.0  # seconds before each content piece
        self.status = 200
        self.end_with_done = True
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.disconnected = asyncio.Event()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("Authorization"))
        if self.status != 200:
            error = {"error": {"message": "model overloaded", "type": "server_error", "code": None}}
            return web.json_response(error, status=self.status)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        model = body["model"]
        try:
            await response.write(sse_chunk(model, {"role": "assistant", "content": ""}))
            for piece in self.reply[: body.get("max_tokens", len(self.reply))]:
                await asyncio.sleep(self.delay)
                await response.write(sse_chunk(model, {"content": piece}))
            if self.end_with_done:
                await response.write(sse_chunk(model, {}, "stop"))
                await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            self.disconnected.set()
        return response
