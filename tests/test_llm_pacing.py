"""The Replier hurries a request's generation (services/llm/engine.py
``UrgentEngine``: its prompt on more threads), not a draft's, whose prompt is
evaluated beside stt's final: an engine double records what it was asked. No sockets."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from proto import messages as m
from services.llm.replies import Replier
from tests.test_llm_drafts import EchoModel, ahead, request
from tests.test_llm_priming import Outbox, done, until


class HurriedEcho(EchoModel):
    """EchoModel that records, per generation, whether it was hurried before it began."""

    def __init__(self) -> None:
        super().__init__()
        self._hurried: set[int] = set()
        self.hurried: list[bool] = []  # per generation started

    def hurry(self, cancelled: threading.Event) -> None:
        self._hurried.add(id(cancelled))

    def stream(
        self, messages: list[m.ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        self.hurried.append(id(cancelled) in self._hurried)
        yield from super().stream(messages, max_tokens, cancelled)


async def test_a_request_is_hurried() -> None:
    model, outbox = HurriedEcho(), Outbox()
    replier = Replier(model, outbox)
    assert replier.submit(request(1, "one two three"))
    await until(lambda: done(outbox))
    await replier.close()
    assert model.hurried == [True]


async def test_a_draft_is_not_hurried() -> None:
    model, outbox = HurriedEcho(), Outbox()
    replier = Replier(model, outbox, draft_tokens=1)
    assert replier.prime(ahead(1, "one two three"))
    await until(lambda: model.computed == 1)
    assert replier.submit(request(1, "one two three"))
    await until(lambda: done(outbox))
    await replier.close()
    assert model.streams == ["one two three"]  # adopted: its prompt was evaluated unhurried
    assert model.hurried == [False]
