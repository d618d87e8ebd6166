"""An engine for any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, OpenAI).

It streams ``POST {base_url}/chat/completions`` as server-sent events. The
engine interface is a blocking generator run in a worker thread, so the HTTP
client (aiohttp) runs on a private event loop thread that the engine owns; the
worker waits for each SSE line in short slices so a cancel is seen within
``_POLL_S`` even while the server is silent. The API key is never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp

from proto.messages import ChatMessage
from services.common.telemetry import redact_url
from services.llm.engine import EngineError, as_dicts

T = TypeVar("T")
_POLL_S = 0.02


class OpenAICompatibleEngine:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        max_tokens: int = 150,
        temperature: float = 0.6,
        seed: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        # For messages and logs: a base URL may carry credentials (https://user:key@host).
        self._shown_url = redact_url(self._url)
        self._model = model
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._seed = seed
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llm-openai-io", daemon=True)
        self._thread.start()
        self._session = self._call(self._new_session())

    def __repr__(self) -> str:  # keeps the key out of any log line that prints the engine
        return f"OpenAICompatibleEngine(url={self._shown_url!r}, model={self._model!r})"

    async def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=self._timeout)

    def _call(self, coro: Coroutine[Any, Any, T], cancelled: threading.Event | None = None) -> T:
        """Run ``coro`` on the engine's loop and wait for it; _Cancelled once
        ``cancelled`` is set, without waiting for a silent server."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        while True:
            try:
                return future.result(timeout=_POLL_S)
            except concurrent.futures.TimeoutError:
                if cancelled is not None and cancelled.is_set():
                    future.cancel()
                    raise _Cancelled from None

    def stream(
        self, messages: list[ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": as_dicts(messages),
            "stream": True,
            "max_tokens": max(1, min(max_tokens, self._max_tokens)),
            "temperature": self._temperature,
        }
        if self._seed is not None:  # OpenAI's and vLLM's field; a server without it ignores it
            payload["seed"] = self._seed
        try:
            response = self._call(self._open(payload), cancelled)
        except _Cancelled:
            return
        finish = response.close  # drops the connection: the server stops generating
        try:
            while not cancelled.is_set():
                line = self._call(response.content.readline(), cancelled)
                if not line:
                    raise EngineError("the server closed the stream before [DONE]")
                piece = _parse_sse_line(line)
                if piece is None:
                    finish = response.release  # complete: the connection may be reused
                    return
                if piece:
                    yield piece
        except _Cancelled:
            return
        finally:
            self._loop.call_soon_threadsafe(finish)

    async def _open(self, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        try:
            response = await self._session.post(self._url, json=payload, headers=self._headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineError(f"cannot reach {self._shown_url}: {exc.__class__.__name__} {exc}") from exc
        if response.status != 200:
            body = (await response.text())[:200]
            response.release()
            raise EngineError(f"{self._shown_url} answered HTTP {response.status}: {body}")
        return response

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._session.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class _Cancelled(Exception):
    pass


def _parse_sse_line(raw: bytes) -> str | None:
    """The text of one SSE line: "" if it carries none, None at ``[DONE]``.

    Events are ``data: {json}`` lines separated by blank lines; comment lines
    start with ":" (keep-alives). Servers put one JSON object per data line.
    """
    line = raw.decode("utf-8", errors="replace").strip()
    if not line.startswith("data:"):
        return ""  # blank separator, comment, "event:" or "id:" field
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise EngineError(f"undecodable SSE data: {data[:100]!r}") from exc
    if event.get("error"):
        raise EngineError(f"server error: {str(event['error'])[:200]}")
    choices = event.get("choices") or []
    if not choices:
        return ""  # e.g. a final usage-only event
    content = (choices[0].get("delta") or {}).get("content")
    return content if isinstance(content, str) else ""
