"""Keeping llama.cpp's evaluated prompt (the KV cache) useful from turn to turn.

llama-cpp-python reuses the cache only up to the first token where the new prompt
differs from the last one. When the history outgrows its bound, turns drops the
oldest messages, and from then on every prompt differs right after the system
prompt: each turn re-evaluated the whole conversation (~400 tokens, 5 s with stt
busy on the other core; bench run 20261124-075746, turns 16-22). Here the dropped
block is cut out of the cache instead and the rest shifted down (llama.cpp moves
the cached keys' rotary positions), so only what is new is evaluated.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_cpp import Llama

# A cut pays when at least this many cached tokens survive it.
MIN_KEPT = 16
# Prompt tokens per decode call while priming: a request waits for the slice in
# progress. Four took ~70-90 ms while stt decoded on the other core (bench spans);
# two ~35-50 ms, at ~16 instead of ~10 ms a token when the machine is idle.
PRIME_SLICE = 2
_SEQUENCE = 0  # llama-cpp-python evaluates every token in sequence 0


def common_prefix(cached: list[int], tokens: list[int]) -> int:
    same = 0
    for old, new in zip(cached, tokens, strict=False):
        if old != new:
            break
        same += 1
    return same


def dropped_block(cached: list[int], tokens: list[int]) -> tuple[int, int] | None:
    """``(start, length)`` of the block of ``cached`` whose removal makes ``tokens``
    share the longest prefix with it, if at least MIN_KEPT more tokens then match
    and ``tokens`` still has something of its own to evaluate after them."""
    start = common_prefix(cached, tokens)
    if start >= len(tokens):
        return None
    best: tuple[int, int] | None = None
    best_kept = MIN_KEPT - 1
    first = tokens[start]
    for resume in range(start + 1, len(cached)):
        if cached[resume] != first:
            continue
        kept = common_prefix(cached[resume:], tokens[start:])
        if kept > best_kept and start + kept < len(tokens):
            best, best_kept = (start, resume - start), kept
    return best


class PromptCache:
    """The ``Llama``'s evaluated tokens: cut out dropped history, evaluate ahead."""

    def __init__(self, llm: Llama) -> None:
        from llama_cpp import llama_memory_can_shift

        self._llm = llm
        memory = llm._ctx.memory  # no public handle: the library keeps it private
        self._can_shift = memory is not None and bool(llama_memory_can_shift(memory))

    def cached(self) -> list[int]:
        return [int(token) for token in self._llm.input_ids[: self._llm.n_tokens]]

    def fit(self, tokens: list[int]) -> int:
        """Cut the block ``tokens`` dropped out of the cache, if any; the tokens cut."""
        if not self._can_shift:
            return 0
        cached = self.cached()
        block = dropped_block(cached, tokens)
        if block is None:
            return 0
        start, length = block
        end = len(cached)
        ctx = self._llm._ctx
        ctx.kv_cache_seq_rm(_SEQUENCE, start, start + length)
        ctx.kv_cache_seq_shift(_SEQUENCE, start + length, end, -length)
        self._llm.input_ids[start : end - length] = cached[start + length :]
        self._llm.n_tokens = end - length
        return length

    def prime(self, tokens: list[int], cancelled: threading.Event) -> int:
        """Evaluate ``tokens`` into the cache a slice at a time until done or
        ``cancelled``; returns how many were evaluated."""
        self.fit(tokens)
        done = common_prefix(self.cached(), tokens)
        evaluated = 0
        while done < len(tokens) and not cancelled.is_set():
            self._llm.n_tokens = done  # eval() drops the cache past this point first
            piece = tokens[done : done + PRIME_SLICE]
            self._llm.eval(piece)
            done += len(piece)
            evaluated += len(piece)
        return evaluated
