"""The bus adapter against a real nats-server: trace context, bad messages, errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from proto import messages as m
from proto.subjects import CONTROL
from services.common import telemetry
from services.common.bus import Bus
from services.common.telemetry import JsonLinesSpanExporter
from tests.support import NatsServer, metric_value

_provider = TracerProvider()  # an SDK provider, so spans have real ids


async def test_trace_context_rides_in_headers_and_bad_messages_are_dropped() -> None:
    trace.set_tracer_provider(_provider)  # no-op if another test set one first
    server = NatsServer().start()  # its own server: no other test's traffic on va.control.*
    try:
        await _check_trace_context_and_drops(server.url)
    finally:
        server.stop()


async def _check_trace_context_and_drops(url: str) -> None:
    publisher = await Bus.connect(url, "test-pub")
    consumer = await Bus.connect(url, "test-sub")
    seen: list[tuple[Any, int]] = []
    done = asyncio.Event()

    async def handle(message: Any, _subject: str) -> None:
        if message.reason == "boom":
            raise RuntimeError("a handler bug must not kill the subscription")
        seen.append((message, trace.get_current_span().get_span_context().trace_id))
        done.set()

    await consumer.subscribe(CONTROL, handle)
    await consumer.flush()
    raw = publisher._nc  # the adapter has no API for garbage, on purpose
    await raw.publish(CONTROL.subject("s1"), b"\xc1 not msgpack")
    await publisher.publish(CONTROL, m.Cancel(session_id="s1", turn_id=1, seq=1, reason="boom"))
    with telemetry.tracer().start_as_current_span("turn") as root:
        await publisher.publish(CONTROL, m.Cancel(session_id="s1", turn_id=2, seq=2))
    await asyncio.wait_for(done.wait(), 10)

    message, trace_id = seen[0]
    assert message == m.Cancel(session_id="s1", turn_id=2, seq=2)
    assert trace_id == root.get_span_context().trace_id
    from prometheus_client import generate_latest

    exposition = generate_latest().decode()
    dropped = "voice_agent_bus_messages_dropped_total"
    assert metric_value(exposition, dropped, service="test-sub", reason="undecodable") == 1
    assert metric_value(exposition, dropped, service="test-sub", reason="handler_error") == 1
    await publisher.close()
    await consumer.close()


def test_jsonl_exporter_writes_one_line_per_span(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(str(path))))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child") as child:
        child.set_attribute("voice_agent.turn_id", 3)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["name"] for r in records] == ["child", "parent"]
    assert records[0]["parent_id"] == records[1]["span_id"]
    assert records[0]["trace_id"] == records[1]["trace_id"]
    assert records[0]["attributes"] == {"voice_agent.turn_id": 3}
    assert records[0]["end_ns"] >= records[0]["start_ns"] > 0
