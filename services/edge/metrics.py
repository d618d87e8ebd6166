"""The edge's own Prometheus metrics (shared ones live in services.common.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

from services.common.metrics import PREFIX, latency_histogram

SERVICE = "edge"

OFFERS_REJECTED = Counter(f"{PREFIX}_edge_offers_rejected", "Offers refused, by reason", ["reason"])
OFFERS_ACCEPTED = Counter(f"{PREFIX}_edge_offers_accepted", "Offers answered")
VOICE_TO_VOICE = latency_histogram(
    "voice_to_voice",
    "End of the user's speech (last voiced moment) to the reply's first audio frame sent to WebRTC",
)
FIRST_AUDIO_OUT = VOICE_TO_VOICE  # its former name, still used by session.py
END_OF_TURN = latency_histogram(
    "end_of_turn",
    "End of the user's speech to the edge deciding the turn is over (SpeechEnded.decided_at - at)",
)
CONNECT = latency_histogram("edge_connect", "Offer received to WebRTC connection up")
# Committed interruptions. The name predates the pause (services/edge/barge_in.py)
# and stays: the Grafana dashboard reads voice_agent_edge_barge_ins_total.
BARGE_INS = Counter(
    f"{PREFIX}_edge_barge_ins", "Agent replies cut off by user speech (committed interruptions)"
)
FALSE_INTERRUPTIONS = Counter(
    f"{PREFIX}_edge_false_interruptions",
    "Interruptions that said nothing (a backchannel, a cough, or no words in time): the agent resumed",
)
BARGE_IN_STOP = latency_histogram(
    "edge_barge_in_stop",
    "Onset of the interrupting speech (capture time) to the agent's playout going silent",
)
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
