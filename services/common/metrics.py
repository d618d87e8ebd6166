"""Prometheus metrics shared by all services, under one prefix."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "voice_agent"

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.75,
    0.9,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)
HOP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1)

BUS_RECEIVED = Counter(
    f"{PREFIX}_bus_messages_received", "Messages received from the bus", ["service", "channel"]
)
BUS_PUBLISHED = Counter(
    f"{PREFIX}_bus_messages_published", "Messages published to the bus", ["service", "channel"]
)
BUS_DROPPED = Counter(
    f"{PREFIX}_bus_messages_dropped",
    "Messages dropped: undecodable, stale turn, or handler error",
    ["service", "channel", "reason"],
)
BUS_HOP = Histogram(
    f"{PREFIX}_bus_hop_seconds",
    "Publish-to-handler time of one bus message",
    ["service", "channel"],
    buckets=HOP_BUCKETS,
)
ENGINE_ERRORS = Counter(
    f"{PREFIX}_engine_errors",
    "Engine call failures: an STT decode, an LLM generation or a TTS synthesis that raised",
    ["service", "engine"],
)
ACTIVE_SESSIONS = Gauge(f"{PREFIX}_active_sessions", "Sessions this replica serves", ["service"])
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_queue_depth",
    "Work waiting, sampled when scraped: queue=bus:<channel> is messages delivered by NATS "
    "and not yet handled; decode (stt), requests (llm) and chunks (tts) are the engines' queues",
    ["service", "queue"],
)
READY = Gauge(f"{PREFIX}_ready", "1 once the service is ready", ["service"])


def latency_histogram(name: str, doc: str) -> Histogram:
    """A seconds histogram with the shared latency buckets."""
    return Histogram(f"{PREFIX}_{name}_seconds", doc, ["service"], buckets=LATENCY_BUCKETS)


def count_engine_errors_from(service: str, engine: str) -> None:
    """Make the service's engine-error series exist at 0 before any failure, so that
    rate() and alerts see "no errors" rather than "no data"."""
    ENGINE_ERRORS.labels(service, engine)
