"""The default engine: llama.cpp in process (llama-cpp-python).

One ``Llama`` lives for the whole process: llama-cpp-python keeps the KV
cache of the last prompt and re-evaluates only the new suffix, so a later
turn that repeats the history pays for the new user message only; when the
history drops its oldest messages, that block is cut out of the cache rather
than the rest re-evaluated (services/llm/prompt_cache.py). ``prime``
evaluates a prompt ahead of its request (the user's words so far, while they
still speak), so the request at the pause pays only for the words that changed.

The engine renders and tokenizes the chat prompt itself (with the GGUF's own
template, as llama-cpp-python's chat completion does), so a primed prompt and
the request's prompt are the same tokens.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from proto.messages import ChatMessage
from services.common.errors import StartupError
from services.llm.engine import as_dicts
from services.llm.prompt_cache import PromptCache

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_types import ChatCompletionRequestMessage, CreateCompletionStreamResponse

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
        threads_batch: int = 1,
        urgent_threads_batch: int = 1,
        max_tokens: int = 150,
        temperature: float = 0.6,
        seed: int | None = None,
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
        self._seed = seed
        # (generation, prompt) threads: usually, and for a stream someone waits on.
        self._threads = (threads, threads_batch)
        self._urgent_threads = (threads, max(threads_batch, urgent_threads_batch))
        self._applied = self._threads
        self._urgent: threading.Event | None = None  # the cancel event of the hurried stream
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
        self._format = _chat_formatter(self._llm)
        self._cache = PromptCache(self._llm)

    def stream(
        self, messages: list[ChatMessage], max_tokens: int, cancelled: threading.Event
    ) -> Iterator[str]:
        limit = self._limit(max_tokens)
        prompt = self._prompt(messages, limit)
        cut, reused = self._cache.fit(prompt)
        self._use_threads_for(cancelled)
        log.info("prompt of %d tokens: %d evaluated before (%d cut from history)", len(prompt), reused, cut)
        # A token prompt: generation reuses the cached prefix token by token, primed or not.
        response = self._llm.create_completion(
            prompt, stream=True, max_tokens=limit, temperature=self._temperature, seed=self._sampling_seed()
        )
        chunks = cast("Iterator[CreateCompletionStreamResponse]", response)
        # ``interrupt(cancelled)`` aborts the evaluation in progress: a dropped draft or a
        # cancelled reply frees the model at once, not after the prompt or token under way
        # (a draft's prompt at nice 5 beside stt's final: 70-215 ms in bench run
        # 20261207-173834). Not after a cut: its first evaluation applies llama.cpp's
        # pending shift of the cached keys, which a retry would apply twice.
        guard = self._cache.interruptible(cancelled) if not cut else contextlib.nullcontext()
        try:
            with guard:
                for chunk in chunks:
                    if cancelled.is_set():
                        return  # between tokens: llama.cpp computes nothing more
                    text = chunk["choices"][0]["text"]
                    if text:
                        yield text
        except RuntimeError:
            if cancelled.is_set():
                return  # interrupted mid-evaluation: llama.cpp kept nothing of that batch
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def prime(self, messages: list[ChatMessage], max_tokens: int, cancelled: threading.Event) -> int:
        """Evaluate the prompt of ``messages`` into the cache, a few tokens at a time
        until done or ``cancelled``; returns how many tokens were evaluated."""
        self._use_threads_for(cancelled)
        return self._cache.prime(self._prompt(messages, self._limit(max_tokens)), cancelled)

    def interrupt(self, cancelled: threading.Event) -> None:
        """Stop at once (any thread) the evaluation of the prime or stream that
        ``cancelled`` cancels: a request wants the model, or the reply is void."""
        self._cache.interrupt(cancelled)

    def hurry(self, cancelled: threading.Event) -> None:
        """Evaluate the prompt of the stream of ``cancelled`` on ``urgent_threads_batch``:
        a request's, which the user waits on. stt's final is done by then, so the other
        core has only the edge (and, in the bench, the browser) on it. First token after
        a prime whose last words changed, one thread against two, with the other core
        idle, a quarter, half or fully busy: 175/109, 211/144, 214/187, 175/262 ms
        (``python -m bench.llm_request_threads``): two threads wait for each other at
        every step when the other is descheduled. In the bench, first token p50
        174-246 ms in five runs against 218-260 in four. Tokens stay on ``threads``:
        generating on two as well gained nothing there (run 20261207-223925)."""
        self._urgent = cancelled

    def _use_threads_for(self, cancelled: threading.Event) -> None:
        """Set llama.cpp's threads for the evaluation ``cancelled`` cancels (on the
        thread that evaluates: llama.cpp reads them at each decode)."""
        from llama_cpp import llama_set_n_threads

        wanted = self._urgent_threads if self._urgent is cancelled else self._threads
        if wanted != self._applied:
            llama_set_n_threads(self._llm.ctx, *wanted)
            self._applied = wanted

    def close(self) -> None:
        self._llm.close()

    def _sampling_seed(self) -> int:
        # Without one, llama-cpp-python derives each completion's seed from the last, from
        # the same constant in every process: every replica and every restart would draw
        # the same numbers in the same order.
        return self._seed if self._seed is not None else secrets.randbits(32)

    def _limit(self, max_tokens: int) -> int:
        return max(1, min(max_tokens, self._max_tokens))

    def _prompt(self, messages: list[ChatMessage], limit: int) -> list[int]:
        # Our dicts are exactly llama_cpp's message TypedDicts.
        fitted = cast("list[ChatCompletionRequestMessage]", self._fit(as_dicts(messages), limit))
        rendered = self._format(messages=fitted)
        return self._llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )

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


def _chat_formatter(llm: Llama) -> Jinja2ChatFormatter:
    """The GGUF's own chat template, as llama-cpp-python's chat completion uses it
    (ChatML when the file has none)."""
    from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        log.info("the model has no chat template: using ChatML")
        template = CHATML_CHAT_TEMPLATE

    def text(token: int) -> str:
        return llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

    return Jinja2ChatFormatter(
        template=template,
        eos_token=text(llm.token_eos()),
        bos_token=text(llm.token_bos()),
        stop_token_ids=[llm.token_eos()],
    )
