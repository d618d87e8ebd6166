"""``python -m bench.llm_request_threads``: a request's first token after a prime whose
last words changed (what the llm does at a user's pause), with the request's prompt
evaluated on one thread or on ``LLM_REQUEST_THREADS_BATCH`` (hurried), while another
process keeps the other core idle, half busy or busy. Prints p50 over the bench's
LibriVox utterances: the partial primed, then the final requested. Why
``LLM_REQUEST_THREADS_BATCH`` defaults to 2, and what it costs on a busy machine.
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

# (newest partial at the pause, speculative final): as Whisper wrote them in bench runs.
UTTERANCES = (
    (
        "Had he married a more amiable woman he might have been made",
        "Had he married a more amiable woman, he might have been made still more respectable than he was.",
    ),
    (
        "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power",
        "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power "
        "to do for them.",
    ),
    ("He was not an old-spose young", "He was not an old-spose young man."),
    (
        "Unless to be rather cold-hearted and rather selfish is to be",
        "Unless to be rather cold-hearted and rather selfish is to be ill-disposed.",
    ),
)


def first_token_ms(engine: LlamaCppEngine, partial: str, final: str, *, hurried: bool) -> float:
    system = ChatMessage("system", DEFAULT_SYSTEM_PROMPT)
    engine.prime([system, ChatMessage("user", partial)], 150, threading.Event())
    cancelled = threading.Event()
    if hurried:
        engine.hurry(cancelled)
    started = time.perf_counter()
    for _piece in engine.stream([system, ChatMessage("user", final)], 2, cancelled):
        break
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.llm_request_threads", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--load", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    args = parser.parse_args()
    settings = Settings()
    engine = LlamaCppEngine(
        configured_model(settings),
        threads=1,
        threads_batch=1,
        urgent_threads_batch=settings.request_threads_batch,
        seed=1,
    )
    first_token_ms(engine, *UTTERANCES[0], hurried=False)  # warm-up: a process's first call is slow
    hurried_header = f"{settings.request_threads_batch} threads p50"
    print(f"{'other core busy':>15} {'1 thread p50':>13} {hurried_header:>14}")
    for share in args.load:
        times: dict[bool, list[float]] = {False: [], True: []}
        with other_core(share):
            for _ in range(args.rounds):
                for hurried in (False, True):
                    for partial, final in UTTERANCES:
                        times[hurried].append(first_token_ms(engine, partial, final, hurried=hurried))
        print(
            f"{share:>14.0%} {statistics.median(times[False]):>10.0f} ms "
            f"{statistics.median(times[True]):>11.0f} ms"
        )
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
