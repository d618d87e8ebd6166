"""Drafts (services/llm/draft.py) in the Replier, with an engine double that echoes
the user's words a token at a time: no sockets. A prime ``ahead`` generates the
reply's first tokens unpublished; the request with the same prompt adopts them,
any other request, newer words or the timeout drop them unheard."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

from proto import messages as m
from services.llm.replies import Replier
from tests.test_llm_priming import SID, Outbox, done, until


class EchoModel:
    """Replies with the last user message's words, one token each, counting the
    tokens it has computed; primes instantly."""

    name = "double"

    def __init__(self) -> None:
        self.streams: list[str] = []  # the user words of each generation started
        self.computed = 0
        self.primed: list[str] = []

    def prime(self, messages: list[m.ChatMessage], max_tokens: int, cancelled: threading.Event) -> int:
        self.primed.append(messages[-1].content)
        return 1

    def interrupt(self, cancelled: threading.Event) -> None:
        pass

    def stream(
        self, messages: list[m.ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        words = messages[-1].content
        self.streams.append(words)
        for word in words.split():
            if cancelled.is_set():
                return
            time.sleep(0.002)
            self.computed += 1
            yield f"{word} "

    def close(self) -> None:
        pass


def ahead(turn: int, words: str) -> m.LlmPrime:
    return m.LlmPrime(
        session_id=SID, turn_id=turn, seq=0, messages=[m.ChatMessage("user", words)], ahead=True
    )


def request(turn: int, words: str) -> m.LlmRequest:
    return m.LlmRequest(session_id=SID, turn_id=turn, seq=0, messages=[m.ChatMessage("user", words)])


def tokens(outbox: Outbox) -> str:
    return "".join(sent.text for sent in outbox.sent if isinstance(sent, m.LlmToken))


async def test_the_request_with_the_drafted_prompt_adopts_the_draft() -> None:
    model, outbox = EchoModel(), Outbox()
    replier = Replier(model, outbox, draft_tokens=2)
    assert replier.prime(ahead(1, "one two three four"))
    await until(lambda: model.computed == 2)
    await asyncio.sleep(0.05)
    assert model.computed == 2  # held after its tokens until a request comes
    assert outbox.sent == [] and model.primed == []  # unpublished; a draft, not a prime
    assert replier.submit(request(1, "one two three four"))
    await until(lambda: done(outbox))
    await replier.close()
    assert model.streams == ["one two three four"]  # one generation, taken over
    assert tokens(outbox) == "one two three four "
    assert [d.text for d in done(outbox)] == ["one two three four "]


async def test_a_request_with_other_words_drops_the_draft_unheard() -> None:
    model, outbox = EchoModel(), Outbox()
    replier = Replier(model, outbox, draft_tokens=2)
    replier.prime(ahead(1, "old spose young man"))
    await until(lambda: model.computed == 2)
    assert replier.submit(request(1, "old sposed young man"))
    await until(lambda: done(outbox))
    await replier.close()
    assert model.streams == ["old spose young man", "old sposed young man"]
    assert tokens(outbox) == "old sposed young man "  # nothing of the draft


async def test_newer_words_replace_the_draft() -> None:
    model, outbox = EchoModel(), Outbox()
    replier = Replier(model, outbox, draft_tokens=1)
    replier.prime(ahead(1, "he was"))
    await until(lambda: model.computed == 1)
    replier.prime(ahead(1, "he was not"))
    await until(lambda: len(model.streams) == 2)
    replier.submit(request(1, "he was not"))
    await until(lambda: done(outbox))
    await replier.close()
    assert model.streams == ["he was", "he was not"]
    assert tokens(outbox) == "he was not "


async def test_a_draft_nobody_adopts_expires_and_frees_the_model() -> None:
    model, outbox = EchoModel(), Outbox()
    replier = Replier(model, outbox, draft_tokens=1, draft_timeout_s=0.05)
    replier.prime(ahead(1, "hello there"))
    await until(lambda: model.computed == 1)
    await asyncio.sleep(0.15)  # expired: the held generation is stopped
    assert model.computed == 1
    # A request from another session gets the model; the expired draft is not adopted.
    other = m.LlmRequest(session_id="s2", turn_id=1, seq=0, messages=[m.ChatMessage("user", "hi")])
    assert replier.submit(other)
    await until(lambda: done(outbox))
    assert replier.submit(request(1, "hello there"))
    await until(lambda: len(done(outbox)) == 2)
    await replier.close()
    assert model.streams == ["hello there", "hi", "hello there"]
    assert [d.text for d in done(outbox)] == ["hi ", "hello there "]


async def test_a_cancel_drops_the_draft() -> None:
    model, outbox = EchoModel(), Outbox()
    replier = Replier(model, outbox, draft_tokens=1)
    replier.prime(ahead(2, "stop it"))
    await until(lambda: model.computed == 1)
    replier.cancel(SID, 2)
    assert not replier.submit(request(2, "stop it"))  # cancelled: stale
    assert replier.submit(request(3, "go on"))
    await until(lambda: done(outbox))
    await replier.close()
    assert model.streams == ["stop it", "go on"]
    assert tokens(outbox) == "go on "


async def test_without_drafts_a_prime_ahead_is_a_prime() -> None:
    model, outbox = EchoModel(), Outbox()
    replier = Replier(model, outbox, draft_tokens=0)
    replier.prime(ahead(1, "what is"))
    await until(lambda: model.primed == ["what is"])
    await replier.close()
    assert model.streams == [] and outbox.sent == []


async def test_another_sessions_words_leave_the_draft_alone() -> None:
    model, outbox = EchoModel(), Outbox()
    replier = Replier(model, outbox, draft_tokens=1)
    replier.prime(ahead(1, "hello there"))
    await until(lambda: model.computed == 1)
    other = m.LlmPrime(session_id="s2", turn_id=1, seq=0, messages=[m.ChatMessage("user", "hi")], ahead=True)
    replier.prime(other)  # its user is still speaking or paused later: this draft goes first
    replier.prime(m.LlmPrime(session_id="s2", turn_id=2, seq=0, messages=[m.ChatMessage("user", "so")]))
    assert replier.submit(request(1, "hello there"))
    await until(lambda: done(outbox))
    await replier.close()
    assert model.streams == ["hello there"]
    assert tokens(outbox) == "hello there "
