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

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

# A cut pays when at least this many cached tokens survive it.
MIN_KEPT = 16
# Prompt tokens per decode call while priming. A request no longer waits for the
# slice in progress (``interrupt``), so slices can be long enough to evaluate well.
PRIME_SLICE = 8
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
    share the longest prefix with it, if at least MIN_KEPT more tokens then match.
    The whole rest of ``tokens`` may match (a prime evaluated the same words before
    the history dropped its oldest message): the cut is made, and ``fit`` leaves the
    last token to evaluate."""
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
        if kept > best_kept:
            best, best_kept = (start, resume - start), kept
    return best


class PromptCache:
    """The ``Llama``'s evaluated tokens: cut out dropped history, evaluate ahead."""

    def __init__(self, llm: Llama) -> None:
        from llama_cpp import llama_get_memory, llama_memory_can_shift

        self._llm = llm
        # llama.cpp's own API on the public context handle, not llama-cpp-python's internals.
        self._memory = llama_get_memory(llm.ctx)
        self._can_shift = self._memory is not None and bool(llama_memory_can_shift(self._memory))
        # The cancel event of the evaluation that may be aborted now; None while
        # nothing may be (a cut's first slice, or no evaluation at all).
        self._running: threading.Event | None = None
        self._lock = threading.Lock()
        self._abort = _AbortFlag(llm)
        _route_llama_logs(self._abort)

    def interrupt(self, cancelled: threading.Event) -> None:
        """Stop now, mid-evaluation (from any thread), the evaluation of ``cancelled``
        (a prime's or a reply's); a no-op otherwise, so it can never cut another
        evaluation short (one that followed the cancelled one on the model)."""
        with self._lock:
            if self._running is cancelled:
                self._abort.raise_()

    @contextmanager
    def interruptible(self, cancelled: threading.Event) -> Iterator[None]:
        """Within it, ``interrupt(cancelled)`` aborts the evaluation in progress; one
        cancelled before it began is aborted at its first step. llama.cpp then keeps
        nothing of the aborted batch (llama-cpp-python counts only what it finished)."""
        with self._lock:
            self._running = cancelled
            if cancelled.is_set():
                self._abort.raise_()
        try:
            yield
        finally:
            with self._lock:
                self._running = None
                self._abort.lower()

    def cached(self) -> list[int]:
        return [int(token) for token in self._llm.input_ids[: self._llm.n_tokens]]

    def fit(self, tokens: list[int]) -> tuple[int, int]:
        """Cut the block ``tokens`` dropped out of the cache, if any. Returns the tokens
        cut and how many of ``tokens`` are then in the cache already."""
        cached = self.cached()
        block = dropped_block(cached, tokens) if self._can_shift else None
        if block is None:
            return 0, common_prefix(cached, tokens)
        from llama_cpp import llama_memory_seq_add, llama_memory_seq_rm

        start, length = block
        end = len(cached)
        llama_memory_seq_rm(self._memory, _SEQUENCE, start, start + length)
        llama_memory_seq_add(self._memory, _SEQUENCE, start + length, end, -length)
        self._llm.input_ids[start : end - length] = cached[start + length :]
        self._llm.n_tokens = end - length
        reused = common_prefix(self.cached(), tokens)
        if reused == len(tokens):
            # The logits in hand are those of the prompt's last token from before the
            # cut, which still saw the dropped block: that token is evaluated again.
            reused -= 1
            llama_memory_seq_rm(self._memory, _SEQUENCE, reused, -1)
            self._llm.n_tokens = reused
        return length, reused

    def prime(self, tokens: list[int], cancelled: threading.Event) -> int:
        """Evaluate ``tokens`` into the cache a slice at a time until done or
        ``cancelled``; returns how many were evaluated."""
        cut, done = self.fit(tokens)
        log.debug("priming %d tokens: %d evaluated before (%d cut from the history)", len(tokens), done, cut)
        start = done
        if cut and done < len(tokens) and not cancelled.is_set():
            # The cut left llama.cpp a shift of the cached keys to apply at the next
            # evaluation; aborted halfway, a retry would turn some layers twice. So the
            # first slice after a cut cannot be interrupted.
            done = self._evaluate(tokens, done)
        with self.interruptible(cancelled):
            while done < len(tokens) and not cancelled.is_set():
                try:
                    done = self._evaluate(tokens, done)
                except RuntimeError:
                    if self._abort.raised:
                        break  # interrupted: llama.cpp dropped the slice from its cache
                    raise
        return done - start

    def _evaluate(self, tokens: list[int], done: int) -> int:
        """Evaluate the slice of ``tokens`` after the first ``done``; the new ``done``."""
        self._llm.n_tokens = done  # eval() drops the cache past this point first
        piece = tokens[done : done + PRIME_SLICE]
        self._llm.eval(piece)
        return done + len(piece)


class _AbortFlag:
    """A flag llama.cpp reads between the graph's nodes, without Python: the abort
    callback is libc's ``strlen`` on a one-byte buffer, true once the byte is set.
    A Python callback would take the GIL hundreds of times per evaluation."""

    def __init__(self, llm: Llama) -> None:
        from llama_cpp import ggml_abort_callback, llama_set_abort_callback

        self._byte = ctypes.create_string_buffer(2)
        self._callback = None
        libc_name = ctypes.util.find_library("c")
        if libc_name is None:
            log.info("no libc found: a prime stops only between slices")
            return
        strlen = ctypes.cast(ctypes.CDLL(libc_name).strlen, ctypes.c_void_p).value
        if strlen is None:
            return
        self._callback = ggml_abort_callback(strlen)
        llama_set_abort_callback(llm.ctx, self._callback, ctypes.addressof(self._byte))

    @property
    def raised(self) -> bool:
        return self._byte.raw[0] != 0

    def raise_(self) -> None:
        self._byte[0] = b"x"

    def lower(self) -> None:
        self._byte[0] = b"\0"


# ggml's levels (ggml.h). llama-cpp-python maps them one step off and prints every
# warning as an error; and an interrupted prime is no error at all.
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_llama_log = logging.getLogger("llama.cpp")
_log_callback: object = None


def _route_llama_logs(abort: _AbortFlag) -> None:
    """llama.cpp's log lines to the ``llama.cpp`` logger: errors as errors unless a
    prime is being interrupted, the rest (routine warnings included) as debug."""
    global _log_callback
    if _log_callback is not None:
        return
    from llama_cpp import llama_log_callback, llama_log_set

    def route(level: int, text: bytes, _user_data: object) -> None:
        error = _GGML_LEVELS.get(level) == logging.ERROR and not abort.raised
        _llama_log.log(
            logging.ERROR if error else logging.DEBUG, "%s", text.decode(errors="replace").rstrip()
        )

    _log_callback = llama_log_callback(route)
    llama_log_set(_log_callback, ctypes.c_void_p(0))
