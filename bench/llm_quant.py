"""``python -m bench.llm_quant``: the bundled model in each quantization ``LLM_QUANT``
offers: time to first token and ms a token (one thread, p50 over turns of a short
conversation) and perplexity on this project's README. Why ``LLM_QUANT`` defaults
to IQ4_NL.
"""

from __future__ import annotations

import argparse
import math
import statistics
import threading
import time
from pathlib import Path
from typing import get_args

import numpy as np

from proto.messages import ChatMessage
from services.common.persona import DEFAULT_SYSTEM_PROMPT
from services.llm.config import Settings
from services.llm.llama_engine import LlamaCppEngine
from services.llm.model import ensure_model
from services.llm.requantize import Quant

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = (
    "What is the capital of Norway?",
    "Why is the sky blue?",
    "Tell me a joke about cats.",
    "What should I cook tonight?",
    "How far away is the moon?",
)
PERPLEXITY_TOKENS = 1500


def speed(path: Path) -> tuple[float, float]:
    """p50 ms to the first token and ms a token after it, over the conversation."""
    engine = LlamaCppEngine(path, threads=1, threads_batch=1, temperature=0.0)
    history = [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("assistant", "Hi, I'm Ava.")]
    first_ms, token_ms = [], []
    try:
        for turn, question in enumerate(("Say hi.", *QUESTIONS)):
            history.append(ChatMessage("user", question))
            started = time.perf_counter()
            stamps, pieces = [], []
            for piece in engine.stream(history, 40, threading.Event()):
                stamps.append(time.perf_counter())
                pieces.append(piece)
            history.append(ChatMessage("assistant", "".join(pieces)))
            if turn == 0 or len(stamps) < 2:
                continue  # the first call of a process is slow
            first_ms.append((stamps[0] - started) * 1000)
            token_ms.append((stamps[-1] - stamps[0]) * 1000 / (len(stamps) - 1))
    finally:
        engine.close()
    return statistics.median(first_ms), statistics.median(token_ms)


def perplexity(path: Path) -> float:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=2, logits_all=True, verbose=False)
    try:
        tokens = llm.tokenize((REPO / "README.md").read_bytes())[:PERPLEXITY_TOKENS]
        llm.eval(tokens)
        logits = np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64)
        top = logits.max(axis=1, keepdims=True)
        log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        return math.exp(-float(log_probs[np.arange(len(tokens) - 1), tokens[1:]].mean()))
    finally:
        llm.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.llm_quant", description=__doc__.splitlines()[0])
    parser.add_argument("--quant", nargs="+", default=list(get_args(Quant)), choices=get_args(Quant))
    args = parser.parse_args()
    settings = Settings()
    print(f"{'quant':>7} {'first token p50':>16} {'ms/token p50':>13} {'perplexity':>11}")
    for quant in args.quant:
        path = ensure_model(settings.model_cache_dir, None, "", quant)
        first_ms, per_token_ms = speed(path)
        print(f"{quant:>7} {first_ms:>13.0f} ms {per_token_ms:>10.1f} ms {perplexity(path):>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
