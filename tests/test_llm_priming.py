"""The llm's priming (services/llm/primer.py) in the Replier, with an engine double
that records what it was asked to evaluate: no sockets. A prime runs only when the
model is free, only the newest waits, and a request takes the model from it at once."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from proto import messages as m
from proto.subjects import Channel
from services.llm.replies import Replier

SID = "s1"


class PrimingModel:
    """Primes until told to finish (or cancelled); replies "Hi." after ``hold`` is set."""

    name = "double"

    def __init__(self) -> None:
        self.priming = threading.Event()
        self.finish_priming = threading.Event()
        self.hold = threading.Event()
        self.primed: list[tuple[str, bool]] = []  # (last user words, cancelled)
        self.niceness: list[int] = []
        self.prime_cancels: list[threading.Event] = []  # each prime's cancel event
        self.interrupted: list[threading.Event] = []  # the cancel events interrupt was given

    def prime(self, messages: list[m.ChatMessage], max_tokens: int, cancelled: threading.Event) -> int:
        self.niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        self.prime_cancels.append(cancelled)
        self.priming.set()
        while not (cancelled.is_set() or self.finish_priming.is_set()):
            time.sleep(0.002)
        self.priming.clear()
        self.primed.append((messages[-1].content, cancelled.is_set()))
        return 3

    def interrupt(self, cancelled: threading.Event) -> None:
        self.interrupted.append(cancelled)

    def stream(
        self, messages: list[m.ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        while not (self.hold.is_set() or cancelled.is_set()):
            time.sleep(0.002)
        yield "Hi."

    def close(self) -> None:
        pass


class Outbox:
    def __init__(self) -> None:
        self.sent: list[msgspec.Struct] = []

    async def publish(self, channel: Channel, message: msgspec.Struct, *, traced: bool = True) -> None:
        self.sent.append(message)

    def next_seq(self, session_id: str) -> int:
        return len(self.sent)


def prime(turn: int, words: str) -> m.LlmPrime:
    return m.LlmPrime(session_id=SID, turn_id=turn, seq=0, messages=[m.ChatMessage("user", words)])


def request(turn: int) -> m.LlmRequest:
    return m.LlmRequest(session_id=SID, turn_id=turn, seq=0, messages=[m.ChatMessage("user", "hello")])


async def until(check: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def done(outbox: Outbox) -> list[m.LlmDone]:
    return [sent for sent in outbox.sent if isinstance(sent, m.LlmDone)]


async def test_an_idle_model_evaluates_the_newest_prime_only() -> None:
    model, outbox = PrimingModel(), Outbox()
    replier = Replier(model, outbox)
    assert replier.prime(prime(1, "What"))
    await until(model.priming.is_set)
    assert replier.prime(prime(1, "What is the"))
    assert replier.prime(prime(1, "What is the capital"))  # replaces the one before it
    model.finish_priming.set()
    await until(lambda: len(model.primed) == 2)
    await replier.close()
    assert model.primed == [("What", False), ("What is the capital", False)]
    assert outbox.sent == []  # a hint: nothing is published back
    # The lowest CPU priority: stt, the edge and the reply itself come first.
    assert model.niceness == [19, 19]


async def test_a_request_takes_the_model_from_a_running_prime() -> None:
    model, outbox = PrimingModel(), Outbox()
    replier = Replier(model, outbox)
    replier.prime(prime(1, "What is"))
    await until(model.priming.is_set)
    model.hold.set()
    assert replier.submit(request(1))
    await until(lambda: done(outbox))
    assert model.primed == [("What is", True)]  # stopped, not finished
    assert model.prime_cancels[0] in model.interrupted  # mid-evaluation, not at the end of a slice
    assert not replier.prime(prime(1, "What is the"))  # its turn has its request: stale
    await replier.close()
    assert [d.text for d in done(outbox)] == ["Hi."]


async def test_no_prime_runs_while_a_reply_generates() -> None:
    model, outbox = PrimingModel(), Outbox()
    replier = Replier(model, outbox)
    replier.submit(request(1))
    await asyncio.sleep(0.05)  # the reply holds the model
    assert replier.prime(prime(2, "wait"))
    await asyncio.sleep(0.05)
    model.hold.set()
    await until(lambda: done(outbox))
    await asyncio.sleep(0.05)
    await replier.close()
    assert model.primed == []  # dropped as busy, not run after the reply


async def test_an_engine_that_cannot_prime_ignores_primes() -> None:
    class Plain:
        name = "plain"

        def stream(
            self, messages: list[m.ChatMessage], max_tokens: int, cancelled: threading.Event
        ) -> Iterator[str]:
            yield "Hi."

        def close(self) -> None:
            pass

    outbox = Outbox()
    replier = Replier(Plain(), outbox)
    assert replier.prime(prime(1, "What"))
    replier.submit(request(1))
    await until(lambda: done(outbox))
    await replier.close()
    assert [d.text for d in done(outbox)] == ["Hi."]
