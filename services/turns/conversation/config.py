"""What the conversation logic needs to know, without pydantic or the environment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConversationConfig:
    system_prompt: str
    greeting: str
    greeting_enabled: bool = True
    # False: the greeting's TextChunk carries allow_interruptions=False, so the
    # edge plays it to its end even if the user talks over it.
    greeting_interruptible: bool = True
    max_tokens: int = 150
    history_max_messages: int = 20
    # A reply that is still silent this long after it was requested is given up:
    # without it a dead llm or tts would leave the session "thinking" forever.
    reply_timeout_s: float = 20.0
    # A session that hears nothing this long is forgotten, so a lost SessionEnded
    # (edge crash) does not leak its history.
    session_idle_timeout_s: float = 1800.0
    # Send partial transcripts' prompts to the llm as LlmPrimes while the user
    # speaks, so the request at the pause finds it evaluated already.
    prime_llm: bool = True
    # Every partial; False: only a turn's first partial and those from the pause on
    # (less llm work per session while the user speaks, more at the pause).
    prime_every_partial: bool = True

    def __post_init__(self) -> None:
        if self.history_max_messages < 1:
            raise ValueError("history_max_messages must be at least 1")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
