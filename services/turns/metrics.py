"""Metrics of the turns service, beside the shared bus metrics."""

from __future__ import annotations

from prometheus_client import Counter

from services.common.metrics import PREFIX

TURNS = Counter(
    f"{PREFIX}_turns",
    "Agent replies closed (greeting included), by outcome",
    ["service", "outcome"],
)
TURNS_INTERRUPTED = Counter(
    f"{PREFIX}_turns_interrupted",
    "Agent replies cut off by the user: barge-in or a superseding utterance",
    ["service"],
)
LLM_REQUESTS = Counter(
    f"{PREFIX}_turns_llm_requests",
    "LlmRequests sent; speculative=true: on a speculative final, before the end of the turn",
    ["service", "speculative"],
)
