"""How the llama engine seeds its sampling (LLM_SEED), with the real model."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from proto.messages import ChatMessage
from services.llm.config import load_settings
from services.llm.llama_engine import LlamaCppEngine
from services.llm.model import configured_model
from tests.test_llm_support import PERSONA

# Many good answers: at temperature 1 two independent draws of 24 tokens all but never agree.
OPEN_QUESTION = [PERSONA, ChatMessage("user", "Invent a name for a pet dragon and say why.")]


@pytest.fixture(scope="module")
def model_path() -> Path:
    return configured_model(load_settings())


def first_reply(path: Path, seed: int | None) -> str:
    """The first reply of a freshly loaded engine, as a new process or replica gives it."""
    engine = LlamaCppEngine(path, temperature=1.0, seed=seed)
    try:
        return "".join(engine.stream(OPEN_QUESTION, 24, threading.Event()))
    finally:
        engine.close()


def test_without_a_seed_two_processes_do_not_draw_the_same_reply(model_path: Path) -> None:
    replies = {first_reply(model_path, None) for _ in range(3)}
    print(f"\n{replies}")
    assert len(replies) > 1, f"three fresh engines drew the same reply: {replies}"


def test_a_seed_gives_a_fresh_process_the_same_reply(model_path: Path) -> None:
    # Not one process asked twice: its cache then holds the prompt, evaluated in other
    # batch sizes, and logits that differ in the last digits can flip a draw at temperature 1.
    replies = [first_reply(model_path, 1234) for _ in range(2)]
    print(f"\n{replies[0]!r}")
    assert replies[0] and replies[0] == replies[1]


def test_an_empty_seed_setting_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_SEED", "")
    assert load_settings().seed is None
    monkeypatch.setenv("LLM_SEED", "42")
    assert load_settings().seed == 42
