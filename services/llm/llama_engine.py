"""The default engine: llama.cpp in process (llama-cpp-python).

One ``Llama`` lives for the whole process: llama-cpp-python keeps the KV
cache of the last prompt and re-evaluates only the new suffix, so a later
turn that repeats the history pays for the new user message only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from proto.messages import ChatMessage
from services.common.errors import StartupError
from services.llm.engine import as_dicts

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage, CreateChatCompletionStreamResponse

log = logging.getLogger(__name__)

# Chat-template tokens around each message (<|im_start|>role\n ... <|im_end|>\n).
_MESSAGE_OVERHEAD = 8


class LlamaCppEngine:
    name = "llama"

    def __init__(
        self,
        model_path: Path,
        *,
        context: int = 2048,
        threads: int = 1,
        threads_batch: int = 2,
        max_tokens: int = 150,
        temperature: float = 0.6,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise StartupError(
                "llama-cpp-python is not installed: run `make install` (it builds the wheel) "
                "or set LLM_ENGINE=openai"
            ) from exc
        self._context = context
        self._max_tokens = max_tokens
        self._temperature = temperature
        try:
            self._llm = Llama(
                model_path=str(model_path),
                n_ctx=context,
                n_threads=threads,
                n_threads_batch=threads_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise StartupError(f"llama.cpp cannot load {model_path} ({exc}): is it a GGUF file?") from exc

    def stream(
        self, messages: list[ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        limit = max(1, min(max_tokens, self._max_tokens))
        # Our dicts are exactly llama_cpp's message TypedDicts; stream=True returns an iterator.
        prompt = cast("list[ChatCompletionRequestMessage]", self._fit(as_dicts(messages), limit))
        response = self._llm.create_chat_completion(
            messages=prompt, stream=True, max_tokens=limit, temperature=self._temperature
        )
        chunks = cast("Iterator[CreateChatCompletionStreamResponse]", response)
        try:
            for chunk in chunks:
                if cancelled.is_set():
                    return  # between tokens: llama.cpp computes nothing more
                text = chunk["choices"][0]["delta"].get("content")
                if isinstance(text, str) and text:  # the first delta holds only the role
                    yield text
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        self._llm.close()

    def _tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=False))

    def _fit(self, messages: list[dict[str, str]], max_tokens: int) -> list[dict[str, str]]:
        """Drop the oldest turns (never the system prompt or the last message)
        until prompt + reply fit the context: llama.cpp would refuse the request."""
        sizes = [self._tokens(m["content"]) + _MESSAGE_OVERHEAD for m in messages]
        budget = self._context - max_tokens
        kept = list(range(len(messages)))
        while sum(sizes[i] for i in kept) > budget:
            droppable = [i for i in kept[:-1] if messages[i]["role"] != "system"]
            if not droppable:
                break  # nothing left to drop: llama.cpp reports the overflow
            kept.remove(droppable[0])
        if len(kept) < len(messages):
            log.info("history trimmed to fit the context: %d of %d messages", len(kept), len(messages))
        return [messages[i] for i in kept]
