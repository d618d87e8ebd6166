"""A call to the whole agent from the Python WebRTC client, watched on the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.edge.ice import use_host_addresses
from tests.bus_watch import BusWatch
from tests.stack_process import StackProcess
from tests.webrtc_client import EdgeClient

# How many calls a barge-in test makes for a story long enough to talk over. The model
# (0.5B, told to answer in one or two sentences) often does just that: as IQ4_NL, 6 of
# 16 draws of the model alone for the tests' ask (Q4_K_M: 1 of 16). Such a story ends
# before the interruptions the test is there for: the model's doing, not the test's
# subject. Each attempt is a fresh call: in the same call the model repeats its short
# reply (seen: the same 18 words to three different asks). Eight calls all short:
# (6/16)**8, under 1 in 2500.
CALLS_FOR_A_STORY = 8


@asynccontextmanager
async def greeted_call(stack: StackProcess) -> AsyncIterator[tuple[EdgeClient, BusWatch, str]]:
    """(client, a BusWatch on the stack's NATS, the session id), once the greeting has
    played: the user's first words then meet a listening agent."""
    use_host_addresses(["127.0.0.1"])
    watch = await BusWatch.connect(stack.nats_url)
    client = EdgeClient(stack.edge_url)
    try:
        await client.connect()
        sid = (await client.wait_for_event("session", within=15))["session_id"]
        await client.wait_for_event("agent_stopped_speaking", within=60, where=lambda e: e["turn_id"] == 0)
        yield client, watch, sid
    finally:
        await client.close()
        await watch.bus.close()
