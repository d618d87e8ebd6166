"""``python -m bench.llm_threads``: llama.cpp generation speed by thread count, on an idle
machine and with one core kept busy by another process (as stt, tts, the edge and a
browser do during a call). Prints time to first token and tokens/s, p50 over turns of a
short conversation with the bundled model. Why ``LLM_THREADS`` defaults to 1.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from bench.load import other_core
from proto.messages import ChatMessage
from services.common.persona import DEFAULT_SYSTEM_PROMPT
from services.llm.config import Settings
from services.llm.llama_engine import LlamaCppEngine
from services.llm.model import configured_model

QUESTIONS = (
    "Tell me about the weather in Paris today.",
    "What is the capital of Norway and why is it famous?",
    "Could you tell me a short story about a fox?",
    "Why is the sky blue?",
    "What should I cook for dinner tonight?",
)


def measure(engine: LlamaCppEngine) -> tuple[float, float]:
    """p50 time to first token (ms) and tokens/s over the conversation."""
    history = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("assistant", "Hi, I'm Ava.")]
    first_token_ms, rates = [], []
    for question in QUESTIONS:
        history.append(ChatMessage("user", question))
        started = time.perf_counter()
        first = None
        pieces = []
        for piece in engine.stream(history, 60, threading.Event()):
            first = first or time.perf_counter()
            pieces.append(piece)
        if first is None:
            continue
        first_token_ms.append((first - started) * 1000)
        if len(pieces) > 1:
            rates.append((len(pieces) - 1) / max(1e-6, time.perf_counter() - first))
        history.append(ChatMessage("assistant", "".join(pieces)))
    return statistics.median(first_token_ms), statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.llm_threads", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    settings = Settings()
    path = configured_model(settings)
    print(f"{'threads':>7} {'busy core':>9} {'first token p50':>16} {'tokens/s p50':>13}")
    for threads in args.threads:
        engine = LlamaCppEngine(path, threads=threads, threads_batch=threads)
        measure(engine)  # warm-up: the first call of a process is slow
        for busy in (False, True):
            with other_core(1.0 if busy else 0.0):
                first_ms, rate = measure(engine)
            print(f"{threads:>7} {busy!s:>9} {first_ms:>13.0f} ms {rate:>13.1f}")
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
