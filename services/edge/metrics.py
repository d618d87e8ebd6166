"""The edge's own Prometheus metrics (shared ones live in services.common.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

from services.common.metrics import PREFIX, latency_histogram

SERVICE = "edge"

OFFERS_REJECTED = Counter(f"{PREFIX}_edge_offers_rejected", "Offers refused, by reason", ["reason"])
OFFERS_ACCEPTED = Counter(f"{PREFIX}_edge_offers_accepted", "Offers answered")
FIRST_AUDIO_OUT = latency_histogram(
    "edge_first_audio_out", "End of user speech to the reply's first audio frame sent"
)
CONNECT = latency_histogram("edge_connect", "Offer received to WebRTC connection up")
BARGE_INS = Counter(f"{PREFIX}_edge_barge_ins", "Agent playout cut off by user speech")
SPECULATIONS = Counter(
    f"{PREFIX}_speculations",
    "Pauses on which the agent started speculatively, by how they ended: "
    "confirmed (the turn ended there) or discarded (the user went on)",
    ["service", "outcome"],
)
HELD_DROPPED = Counter(
    f"{PREFIX}_edge_speculative_audio_dropped",
    "AudioChunks of a speculative reply dropped unheard because the user went on",
)
