"""The OpenAI-compatible engine against a server double speaking OpenAI's SSE format."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from proto.messages import ChatMessage
from services.llm.engine import EngineError
from services.llm.openai_engine import OpenAICompatibleEngine
from tests.test_llm_support import FakeOpenAI

REPLY = ["Hello", " there", ",", " how", " can", " I", " help", "?"]
KEY = "sk-test-secret-123"


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    fake = await FakeOpenAI(list(REPLY)).start()
    yield fake
    await fake.stop()


@pytest.fixture
def engine(server: FakeOpenAI) -> Iterator[OpenAICompatibleEngine]:
    engine = OpenAICompatibleEngine(server.base_url, "test-model", api_key=KEY, max_tokens=6, temperature=0.3)
    yield engine
    engine.close()


def collect(engine: OpenAICompatibleEngine, messages: list[ChatMessage], max_tokens: int = 150) -> list[str]:
    return list(engine.stream(messages, max_tokens, threading.Event()))


async def test_streams_the_pieces_of_an_openai_request(
    engine: OpenAICompatibleEngine, server: FakeOpenAI
) -> None:
    messages = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello, I was saying", interrupted=True),
        ChatMessage("user", "Go on"),
    ]
    # The engine blocks: run it in a thread, the double answers on this loop.
    pieces = await asyncio.to_thread(collect, engine, messages, 100)

    assert pieces == REPLY[:6]  # LLM_MAX_TOKENS caps the request's max_tokens
    body = server.requests[0]
    assert body["model"] == "test-model" and body["stream"] is True
    assert body["max_tokens"] == 6 and body["temperature"] == 0.3
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][2] == {"role": "assistant", "content": "Hello, I was saying..."}
    assert server.authorizations == [f"Bearer {KEY}"]


async def test_the_api_key_is_not_in_the_engine_repr(engine: OpenAICompatibleEngine) -> None:
    assert KEY not in repr(engine) and "test-model" in repr(engine)


async def test_cancel_stops_the_stream_while_the_server_is_silent(
    engine: OpenAICompatibleEngine, server: FakeOpenAI
) -> None:
    server.delay = 2.0
    cancelled = threading.Event()
    pieces = engine.stream([ChatMessage("user", "Hi")], 50, cancelled)

    def consume() -> tuple[list[str], float]:
        got = list(pieces)
        return got, time.monotonic()

    consumer = asyncio.create_task(asyncio.to_thread(consume))
    await asyncio.sleep(0.3)  # the request is open, no token yet
    cancelled_at = time.monotonic()
    cancelled.set()
    got, returned_at = await asyncio.wait_for(consumer, 2)

    assert got == []
    print(f"\nopenai engine: cancel -> stream returned in {(returned_at - cancelled_at) * 1000:.0f} ms")
    assert returned_at - cancelled_at < 0.15
    # Closing the connection is what tells a real server to stop generating.
    await asyncio.wait_for(server.disconnected.wait(), 5)


async def test_an_http_error_is_an_engine_error(engine: OpenAICompatibleEngine, server: FakeOpenAI) -> None:
    server.status = 503
    with pytest.raises(EngineError, match=r"HTTP 503.*model overloaded"):
        await asyncio.to_thread(collect, engine, [ChatMessage("user", "Hi")])


async def test_a_stream_cut_before_done_is_an_engine_error(
    engine: OpenAICompatibleEngine, server: FakeOpenAI
) -> None:
    server.end_with_done = False
    with pytest.raises(EngineError, match=r"before \[DONE\]"):
        await asyncio.to_thread(collect, engine, [ChatMessage("user", "Hi")])


async def test_an_unreachable_server_is_an_engine_error() -> None:
    from tests.support import free_port

    engine = OpenAICompatibleEngine(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=2)
    try:
        with pytest.raises(EngineError, match="cannot reach"):
            await asyncio.to_thread(collect, engine, [ChatMessage("user", "Hi")])
    finally:
        engine.close()
