"""The llm service on a real nats-server with the real model (and the OpenAI double)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import nats
import pytest
from prometheus_client import REGISTRY

from proto.messages import ChatMessage, LlmDone, LlmPrime, LlmRequest, SessionEnded, TextChunk
from proto.subjects import SESSION
from services.common.bus import Bus
from services.llm.chunker import speakable
from services.llm.config import load_settings
from services.llm.engine import ChatEngine, ThreadedStream, warm_up
from services.llm.llama_engine import LlamaCppEngine
from services.llm.model import configured_model
from services.llm.replies import Replier
from services.llm.service import start_with
from tests.support import NatsServer, free_port
from tests.test_llm_priming import Outbox, until
from tests.test_llm_support import PERSONA, Client, FakeOpenAI

REPO = Path(__file__).resolve().parents[1]
QUESTION = "What is the capital of France? Answer in one sentence."
STORY = "Tell me a long story about a dragon who learns to bake bread. Use many sentences."


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaCppEngine]:
    """One warm model for the module, as one process keeps one for its life."""
    settings = load_settings()
    path = configured_model(settings)
    engine = LlamaCppEngine(path, context=settings.context, threads=settings.threads)
    warm_up(engine)
    yield engine
    engine.close()


@asynccontextmanager
async def running(
    nats_server: NatsServer, prebuilt: ChatEngine | None = None, **overrides: Any
) -> AsyncIterator[Client]:
    """The service on its own connection, and a client for a fresh session.

    ``prebuilt`` is a loaded engine to share; None builds one from the settings.
    """
    service_bus = await Bus.connect(nats_server.url, "llm")
    stop = await start_with(service_bus, load_settings(**{"warmup": False, **overrides}), prebuilt)
    # Make sure the server has the service's subscriptions before the client publishes.
    await service_bus.flush()
    client_bus = await Bus.connect(nats_server.url, "test-client")
    client = await Client(client_bus, uuid4().hex).start()
    try:
        yield client
    finally:
        await stop()
        await client_bus.close()
        await service_bus.close()


def assert_complete_reply(client: Client, turn_id: int) -> None:
    turn = client.turns[turn_id]
    assert turn.done is not None
    done = turn.done[1]
    assert not done.cancelled and done.error == ""
    assert [t.index for _, t in turn.tokens] == list(range(len(turn.tokens)))
    assert done.tokens == len(turn.tokens) > 0
    assert done.text == turn.text()
    assert re.search(r"[A-Za-z]{2,}", done.text), done.text
    chunks: list[TextChunk] = sorted((c for _, c in turn.chunks), key=lambda c: c.seq)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    # What tts hears is the whole reply, minus markup.
    assert " ".join(c.text for c in chunks).split() == speakable(done.text).split()
    assert turn.late() == []


async def test_a_request_streams_tokens_chunks_and_done(
    nats_server: NatsServer, llama: LlamaCppEngine
) -> None:
    first_tokens = metric("voice_agent_llm_first_token_seconds_count", service="llm")
    async with running(nats_server, llama) as client:
        sent = await client.request(1, QUESTION)
        done = await client.done(1)

    assert_complete_reply(client, 1)
    assert "paris" in done.text.lower(), done.text
    turn = client.turns[1]
    ttft = turn.tokens[0][0] - sent
    span = turn.tokens[-1][0] - turn.tokens[0][0]
    rate = (len(turn.tokens) - 1) / span if span > 0 else float("inf")
    first_chunk = turn.chunks[0][0] - sent
    print(
        f"\nreply: {done.text!r}\nTTFT {ttft * 1000:.0f} ms, first chunk {first_chunk * 1000:.0f} ms, "
        f"{len(turn.tokens)} tokens at {rate:.1f} tokens/s"
    )
    assert ttft < 2.0
    assert time.time() - 60 < done.first_token_at <= time.time()
    assert metric("voice_agent_llm_first_token_seconds_count", service="llm") == first_tokens + 1


async def test_a_later_turn_with_history(nats_server: NatsServer, llama: LlamaCppEngine) -> None:
    async with running(nats_server, llama) as client:
        sent = await client.request(1, "Name one planet of the solar system.")
        first = await client.done(1)
        ttft_1 = client.turns[1].tokens[0][0] - sent
        history = (
            ChatMessage("user", "Name one planet of the solar system."),
            ChatMessage("assistant", first.text),
        )
        sent = await client.request(2, "And one more?", history)
        await client.done(2)
        ttft_2 = client.turns[2].tokens[0][0] - sent
    assert_complete_reply(client, 2)
    print(f"\nTTFT turn 1 {ttft_1 * 1000:.0f} ms, turn 2 {ttft_2 * 1000:.0f} ms")


def first_token_after(engine: LlamaCppEngine, messages: list[ChatMessage]) -> tuple[float, int]:
    """Seconds to the first token, and how many prompt tokens llama.cpp evaluated."""
    llm = engine._llm
    evaluated: list[int] = []
    evaluate = llm.eval  # a spy on the library: it is the only way to count evaluated tokens

    def counting_eval(tokens: Sequence[int]) -> None:
        evaluated.append(len(tokens))
        evaluate(tokens)

    llm.eval = counting_eval
    try:
        started = time.monotonic()
        for _ in engine.stream(messages, 1, threading.Event()):
            break
        return time.monotonic() - started, sum(evaluated)
    finally:
        del llm.eval


def test_the_kept_model_reuses_the_prompt_prefix(llama: LlamaCppEngine) -> None:
    facts = " ".join(f"Fact {i}: {i} follows {i - 1}." for i in range(1, 8))
    turn_1 = [PERSONA, ChatMessage("user", facts), ChatMessage("assistant", "Noted.")]
    turn_1.append(ChatMessage("user", "Hi"))
    turn_2 = [*turn_1, ChatMessage("assistant", "Hello!"), ChatMessage("user", "What follows 7?")]
    first_token_after(llama, turn_1)
    cached, cached_tokens = first_token_after(llama, turn_2)
    llama._llm.reset()  # forget the evaluated prompt, as a fresh Llama per request would
    cold, cold_tokens = first_token_after(llama, turn_2)
    print(
        f"\nlater turn: {cached_tokens} prompt tokens evaluated in {cached * 1000:.0f} ms with the "
        f"history cached, {cold_tokens} in {cold * 1000:.0f} ms without"
    )
    assert cold_tokens > 80
    assert 0 < cached_tokens < 30  # only the new assistant + user messages


def test_a_primed_prompt_leaves_the_request_only_the_words_that_changed(llama: LlamaCppEngine) -> None:
    history = [PERSONA, ChatMessage("assistant", "Hello! What shall we talk about?")]
    partial = [*history, ChatMessage("user", "What is the capital")]
    final = [*history, ChatMessage("user", "What is the capital of France?")]
    llama._llm.reset()
    primed = llama.prime(partial, 150, threading.Event())
    assert llama.prime(partial, 150, threading.Event()) == 0  # all of it is in the cache
    _, after_prime = first_token_after(llama, final)
    llama._llm.reset()
    _, cold = first_token_after(llama, final)
    print(f"\nprimed {primed} tokens; the request then evaluated {after_prime}, {cold} unprimed")
    assert cold > 45
    assert 0 < after_prime < 15  # "of France?" and the assistant's header
    llama._llm.reset()
    stopped = threading.Event()
    stopped.set()
    assert llama.prime(final, 150, stopped) == 0  # a request came first: nothing evaluated


def test_history_that_drops_its_oldest_messages_is_cut_out_of_the_cache(llama: LlamaCppEngine) -> None:
    exchanges = [
        (f"Please remember fact number {i}: the {c} box holds {n} marbles.", f"Noted: {n} in the {c} box.")
        for i, (c, n) in enumerate(
            zip(("red", "blue", "green", "white", "black"), (3, 7, 11, 19, 23), strict=True)
        )
    ]
    history = [m for q, a in exchanges for m in (ChatMessage("user", q), ChatMessage("assistant", a))]
    llama._llm.reset()
    first_token_after(llama, [PERSONA, *history, ChatMessage("user", "How many boxes?")])
    # turns' bounded history dropped the oldest exchange; the question is new.
    later = [PERSONA, *history[2:], ChatMessage("user", "Which box holds 7?")]
    _, evaluated = first_token_after(llama, later)
    llama._llm.reset()
    _, cold = first_token_after(llama, later)
    print(f"\nafter the oldest exchange was dropped: {evaluated} tokens evaluated, {cold} without the cut")
    assert cold > 150
    assert 0 < evaluated < 20  # the new question and the assistant's header
    assert "".join(llama.stream(later, 12, threading.Event())).strip()


def test_a_prime_of_the_same_words_survives_the_history_dropping_its_oldest_message() -> None:
    # A bench turn took 4.7 s: the history dropped a message between the prime and the
    # request for the same words, so all of the cut cache matched, the right cut was
    # refused, and 456 tokens were evaluated again.
    greedy = LlamaCppEngine(configured_model(load_settings()), temperature=0.0)
    try:
        history = [
            m
            for i, colour in enumerate(("red", "blue", "green", "white"))
            for m in (
                ChatMessage("user", f"Box {i} is {colour}. Please remember that."),
                ChatMessage("assistant", f"Noted: box {i} is {colour}."),
            )
        ]
        question = ChatMessage("user", "Which box is green?")
        greedy.prime([PERSONA, *history, question], 24, threading.Event())
        later = [PERSONA, *history[1:], question]
        _, evaluated = first_token_after(greedy, later)
        reply = "".join(greedy.stream(later, 24, threading.Event()))
        greedy._llm.reset()
        _, cold = first_token_after(greedy, later)
    finally:
        greedy.close()
    print(f"\nafter the cut: {evaluated} token evaluated, {cold} without it; reply {reply!r}")
    assert cold > 80
    assert evaluated == 1  # the last token, for fresh logits: the cut kept the rest
    # Not the reply of a fresh evaluation token for token: the kept keys were computed
    # beside the dropped message (as with every history cut).
    assert reply.strip()


def test_an_interrupted_prime_leaves_a_cache_the_next_prime_completes(llama: LlamaCppEngine) -> None:
    facts = " ".join(f"Fact {i}: {i} follows {i - 1}." for i in range(1, 40))
    messages = [PERSONA, ChatMessage("user", facts)]
    llama._llm.reset()
    result: list[int] = []
    cancelled = threading.Event()
    worker = threading.Thread(target=lambda: result.append(llama.prime(messages, 150, cancelled)))
    worker.start()
    time.sleep(0.3)
    llama.interrupt(cancelled)  # mid-slice: llama.cpp aborts the evaluation and drops it
    worker.join(timeout=30)
    rest = llama.prime(messages, 150, threading.Event())
    total = len(llama._cache.cached())
    print(f"\ninterrupted after {result[0]} of {total} prompt tokens; the next prime evaluated {rest}")
    assert 0 < result[0] < total and result[0] + rest == total
    llama.interrupt(cancelled)  # that prime is over: must not cut the reply short
    hello = [*messages[:1], ChatMessage("user", "Say hello.")]
    assert len(list(llama.stream(hello, 8, threading.Event()))) > 1


async def test_a_stream_cancelled_mid_prompt_frees_the_model_at_once(llama: LlamaCppEngine) -> None:
    facts = " ".join(f"Fact {i}: {i} follows {i - 1}." for i in range(1, 40))  # seconds to evaluate
    messages = [PERSONA, ChatMessage("user", facts)]
    llama._llm.reset()
    stream = ThreadedStream(llama, messages, 8)
    await asyncio.sleep(0.3)
    stream.cancel()  # mid-prompt: llama.cpp aborts the batch (a dropped draft, a barge-in)
    await asyncio.wait_for(stream.finished, 30)
    assert llama._cache.cached() == []  # aborted, not evaluated to the end and then stopped
    other = threading.Event()
    hello = [PERSONA, ChatMessage("user", "Say hello.")]
    pieces = []
    for piece in llama.stream(hello, 8, other):
        llama.interrupt(stream.cancelled)  # the old stream's cancel never cuts another short
        pieces.append(piece)
    assert len(pieces) > 1


def test_a_reply_from_a_primed_prompt_is_the_reply_without(llama: LlamaCppEngine) -> None:
    greedy = LlamaCppEngine(configured_model(load_settings()), temperature=0.0)
    try:
        messages = [PERSONA, ChatMessage("user", "Name three colours of the rainbow.")]
        plain = "".join(greedy.stream(messages, 24, threading.Event()))
        greedy._llm.reset()
        greedy.prime(messages, 24, threading.Event())  # the whole prompt: sampling starts from it
        _, evaluated = first_token_after(greedy, messages)
        primed = "".join(greedy.stream(messages, 24, threading.Event()))
    finally:
        greedy.close()
    assert evaluated == 0
    assert plain and primed == plain


def llama_threads(engine: LlamaCppEngine) -> tuple[int, int]:
    from llama_cpp import llama_n_threads, llama_n_threads_batch

    ctx = engine._llm.ctx
    return llama_n_threads(ctx), llama_n_threads_batch(ctx)


def test_a_hurried_stream_evaluates_its_prompt_on_more_threads() -> None:
    engine = LlamaCppEngine(
        configured_model(load_settings()), threads=1, threads_batch=1, urgent_threads_batch=2
    )
    try:
        messages = [PERSONA, ChatMessage("user", "Name three colours of the rainbow.")]
        hurried, other = threading.Event(), threading.Event()
        engine.hurry(hurried)
        seen = [llama_threads(engine) for _ in engine.stream(messages, 4, hurried)]
        primed = engine.prime([PERSONA, ChatMessage("user", "Name three fruits.")], 4, other)
        after_prime = llama_threads(engine)
        plain = [llama_threads(engine) for _ in engine.stream(messages, 4, other)]
    finally:
        engine.close()
    assert seen and set(seen) == {(1, 2)}  # its prompt on two threads, its tokens on one
    assert primed > 0 and after_prime == (1, 1)  # only the hurried stream's evaluation
    assert plain and set(plain) == {(1, 1)}


async def test_a_draft_held_mid_reply_and_adopted_is_the_reply_without() -> None:
    greedy = LlamaCppEngine(configured_model(load_settings()), temperature=0.0)
    messages = [PERSONA, ChatMessage("user", "Name three colours of the rainbow.")]
    ids = {"session_id": "s1", "turn_id": 1, "seq": 0, "messages": messages, "max_tokens": 24}
    adopted = metric("voice_agent_llm_drafts_total", service="llm", outcome="adopted")
    try:
        plain = "".join(greedy.stream(messages, 24, threading.Event()))
        outbox = Outbox()
        replier = Replier(greedy, outbox, draft_tokens=4)
        replier.prime(LlmPrime(**ids, ahead=True))
        await asyncio.sleep(1.0)  # the draft's four tokens, then it waits
        assert outbox.sent == []
        replier.submit(LlmRequest(**ids))
        await until(lambda: any(isinstance(s, LlmDone) for s in outbox.sent), within=30)
        replier.submit(LlmRequest(**{**ids, "turn_id": 2}))  # the adopting reply freed the model
        await until(lambda: sum(isinstance(s, LlmDone) for s in outbox.sent) == 2, within=30)
        await replier.close()
    finally:
        greedy.close()
    first, second = [s for s in outbox.sent if isinstance(s, LlmDone)]
    assert metric("voice_agent_llm_drafts_total", service="llm", outcome="adopted") == adopted + 1
    assert plain and first.text == plain  # held between tokens and taken over: the same reply
    assert second.text == plain


async def test_cancel_mid_stream_stops_at_once(nats_server: NatsServer, llama: LlamaCppEngine) -> None:
    stops = metric("voice_agent_llm_cancel_stop_seconds_count", service="llm")
    async with running(nats_server, llama) as client:
        await client.request(1, STORY)
        turn = client.turns[1]
        await client.tokens(1, 8)
        cancelled_at = await client.cancel(1)
        async with asyncio.timeout(5):
            done = await client.done(1)
        stopped = time.monotonic() - cancelled_at
        await asyncio.sleep(0.5)  # anything still in flight would arrive now

        print(f"\ncancel -> LlmDone(cancelled) in {stopped * 1000:.1f} ms after {done.tokens} tokens")
        assert done.cancelled and done.error == ""
        assert stopped < 0.5
        assert turn.late() == []  # no token or chunk after the LlmDone
        assert done.tokens == len(turn.tokens) and done.text == turn.text()
        assert not any(c.last for _, c in turn.chunks)
        assert metric("voice_agent_llm_cancel_stop_seconds_count", service="llm") == stops + 1

        # The model is free again for the next turn.
        await client.request(2, QUESTION)
        await client.done(2)
    assert_complete_reply(client, 2)


async def test_a_newer_request_supersedes_the_older(nats_server: NatsServer, llama: LlamaCppEngine) -> None:
    async with running(nats_server, llama) as client:
        await client.request(1, STORY)
        await client.tokens(1, 1)
        await client.request(2, QUESTION)
        async with asyncio.timeout(5):
            old = await client.done(1)
        await client.done(2)
    assert old.cancelled
    assert not any(c.last for _, c in client.turns[1].chunks)
    assert_complete_reply(client, 2)


async def test_a_request_for_a_cancelled_turn_is_refused(
    nats_server: NatsServer, llama: LlamaCppEngine
) -> None:
    stale = metric(
        "voice_agent_bus_messages_dropped_total", service="llm", channel="llm.request", reason="stale"
    )
    async with running(nats_server, llama) as client:
        await client.cancel(3)
        await client.request(3, QUESTION)
        await client.request(4, QUESTION)
        await client.done(4)
    assert 3 not in client.turns
    assert_complete_reply(client, 4)
    after = metric(
        "voice_agent_bus_messages_dropped_total", service="llm", channel="llm.request", reason="stale"
    )
    assert after == stale + 1


async def test_an_undecodable_request_is_counted_and_the_service_goes_on(
    nats_server: NatsServer, llama: LlamaCppEngine
) -> None:
    labels = {"service": "llm", "channel": "llm.request", "reason": "undecodable"}
    before = metric("voice_agent_bus_messages_dropped_total", **labels)
    async with running(nats_server, llama) as client:
        raw = await nats.connect(nats_server.url)
        await raw.publish("va.llm.request", b"\xc1 this is not msgpack")
        await raw.publish("va.llm.request", b"\x81\xa4type\xa9LlmRequest")  # msgpack, wrong shape
        await raw.drain()
        await client.request(1, QUESTION)
        await client.done(1)
    assert metric("voice_agent_bus_messages_dropped_total", **labels) == before + 2
    assert_complete_reply(client, 1)


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = await FakeOpenAI(
        ["Sure", ",", " the", " answer", " is", " **42**", ".", " Anything", " else", "?"]
    ).start()
    yield fake
    await fake.stop()


async def test_the_openai_engine_through_the_service(
    nats_server: NatsServer, fake_openai: FakeOpenAI
) -> None:
    # No engine passed: the service builds it from settings and warms it up.
    async with running(
        nats_server, None, engine="openai", openai_base_url=fake_openai.base_url, warmup=True
    ) as client:
        await client.request(1, QUESTION)
        done = await client.done(1)
    assert len(fake_openai.requests) == 2  # warm-up, then the request
    assert done.text == "Sure, the answer is **42**. Anything else?"
    assert_complete_reply(client, 1)
    assert [c.text for _, c in client.turns[1].chunks] == ["Sure, the answer", "is 42.", "Anything else?"]


async def test_an_engine_error_is_reported_and_the_service_goes_on(
    nats_server: NatsServer, fake_openai: FakeOpenAI
) -> None:
    errors = metric("voice_agent_engine_errors_total", service="llm", engine="openai")
    async with running(nats_server, None, engine="openai", openai_base_url=fake_openai.base_url) as client:
        fake_openai.status = 500
        await client.request(1, QUESTION)
        failed = await client.done(1)
        fake_openai.status = 200
        await client.request(2, QUESTION)
        await client.done(2)

    assert "HTTP 500" in failed.error and not failed.cancelled and failed.tokens == 0
    # The turn's speech is still closed, so tts and the edge do not wait for more.
    assert [(c.text, c.last) for _, c in client.turns[1].chunks] == [("", True)]
    assert metric("voice_agent_engine_errors_total", service="llm", engine="openai") == errors + 1
    assert_complete_reply(client, 2)


async def test_one_generation_at_a_time_and_a_queued_request_can_be_cancelled(
    nats_server: NatsServer, fake_openai: FakeOpenAI
) -> None:
    fake_openai.delay = 0.05  # 10 pieces: ~0.5 s per reply
    async with running(nats_server, None, engine="openai", openai_base_url=fake_openai.base_url) as a:
        b = await Client(a.bus, uuid4().hex).start()
        c = await Client(a.bus, uuid4().hex).start()
        await a.request(1, QUESTION)
        await a.tokens(1, 1)
        await b.request(1, QUESTION)
        await c.request(1, QUESTION)
        await asyncio.sleep(0.1)
        cancelled_at = await c.cancel(1)
        queued = await c.done(1)
        waited = time.monotonic() - cancelled_at
        await a.done(1)
        await b.done(1)

    assert queued.cancelled and queued.tokens == 0 and waited < 0.2
    assert c.turns[1].chunks == []
    assert len(fake_openai.requests) == 2  # the cancelled request never reached the engine
    a_done_at = a.turns[1].done[0] if a.turns[1].done else 0.0
    assert b.turns[1].tokens[0][0] > a_done_at  # b waited for a: one generation at a time
    assert_complete_reply(a, 1)
    assert_complete_reply(b, 1)


async def test_session_end_cancels_its_reply(nats_server: NatsServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.delay = 0.1
    async with running(nats_server, None, engine="openai", openai_base_url=fake_openai.base_url) as client:
        await client.request(1, QUESTION)
        await client.tokens(1, 2)
        session = client.session_id
        ended = SessionEnded(session_id=session, turn_id=1, seq=client.bus.next_seq(session))
        await client.bus.publish(SESSION, ended)
        async with asyncio.timeout(1):
            done = await client.done(1)
    assert done.cancelled and done.tokens < len(fake_openai.reply)


async def http_status(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def test_the_process_loads_warms_serves_and_stops(nats_server: NatsServer, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NATS_URL": nats_server.url, "LLM_HTTP_PORT": str(port)}
    log = tmp_path / "llm.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.llm", cwd=REPO, env=env, stderr=stderr
        )
    try:
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            while await http_status(http, f"{base}/readyz") != 200:
                assert proc.returncode is None, log.read_text()
                assert time.monotonic() - started < 90
                await asyncio.sleep(0.1)
            print(f"\nprocess ready in {time.monotonic() - started:.1f} s")
            bus = await Bus.connect(nats_server.url, "test-client")
            client = await Client(bus, uuid4().hex).start()
            await client.request(1, QUESTION)
            await client.done(1)
            await bus.close()
            assert_complete_reply(client, 1)
            async with http.get(f"{base}/metrics") as response:
                body = await response.text()
            assert 'voice_agent_llm_first_token_seconds_count{service="llm"} 1.0' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0, log.read_text()


def test_the_process_refuses_a_model_that_fails_its_check(nats_server: NatsServer, tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF but not really")
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "LLM_HTTP_PORT": str(free_port()),
        "LLM_MODEL_PATH": str(fake),
        "LLM_MODEL_SHA256": "0" * 64,
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.llm"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm: error: model file") and "expected 000" in lines[0]


def test_the_process_refuses_a_bad_setting_in_one_line() -> None:
    env = {**os.environ, "LLM_THREADS": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "services.llm"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "llm: error: LLM_THREADS: Input should be greater than or equal to 1"
