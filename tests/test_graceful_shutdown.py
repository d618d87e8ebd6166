"""Graceful shutdown of one replica, end to end: `python -m stack` with two llm and two
turns replicas, a Python WebRTC client speaking LibriVox, SIGTERM as Kubernetes sends it.

- an llm replica stopped while it generates a reply finishes it (the reply plays) and
  exits 0 within the grace; its /readyz says 503 at once;
- a turns replica stopped while it owns a conversation gives it back to the edge with
  its history: the next turn is answered by the other replica, with the history kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from proto import messages as m
from proto.subjects import LLM_REQUEST
from services.common.bus import Bus
from services.edge.ice import use_host_addresses
from tests.e2e_turn import greeted, say_and_wait_for_reply
from tests.replica_stack import ReplicaStack
from tests.support import librivox_utterances, normalize_words
from tests.webrtc_client import EdgeClient

pytestmark = pytest.mark.e2e

GRACE_S = 60.0  # a reply on a loaded machine takes a while; Kubernetes' default is 25
ENV = {
    "VOICE_AGENT_SHUTDOWN_GRACE_S": str(GRACE_S),
    "LLM_THREADS": "1",
    "STT_CPU_THREADS": "1",
    "TURNS_REPLY_TIMEOUT_S": "120",
}
TURN_WITHIN = 240.0
UTTERANCES = {u.name.rsplit("-", 1)[-1]: u for u in librivox_utterances()}


@pytest.fixture(scope="module")
def stack() -> Iterator[ReplicaStack]:
    process = ReplicaStack({"llm": 2, "turns": 2}, ENV).start(timeout=900)
    yield process
    leftover = process.stop()
    assert not leftover, f"Ctrl-C left processes running: {leftover}"


async def readyz_turns_503(stack: ReplicaStack, service: str, index: int) -> bool:
    """The signal is handled in a moment: /readyz answers 503 "draining" within 2 s."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        status, body = await asyncio.to_thread(stack.get, service, index, "/readyz")
        if (status, body["status"]) == (503, "draining"):
            return True
        await asyncio.sleep(0.02)
    return False


def owner_of(stack: ReplicaStack, session: str, ids: list[str]) -> int:
    """The turns replica (index in ``ids``) the edge last assigned ``session`` to: the
    edge logs "session <id>: turns on <replica>" for each owner it gets."""
    marker = f"session {session}: turns on "
    owners = [
        rest.strip()
        for line in stack.log_path.read_text(errors="replace").splitlines()
        if marker in line and len((rest := line.split(marker, 1)[1]).split()) == 1
    ]
    assert owners, f"the edge logged no turns owner for {session}"
    return ids.index(owners[-1])


def llm_requests(stack: ReplicaStack, index: int) -> float:
    return stack.metric(
        "llm", index, "voice_agent_bus_messages_received_total", service="llm", channel="llm.request"
    )


async def first_to_take_a_request(stack: ReplicaStack, within: float) -> int:
    before = [llm_requests(stack, i) for i in (0, 1)]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for index in (0, 1):
            if await asyncio.to_thread(llm_requests, stack, index) > before[index]:
                return index
        await asyncio.sleep(0.05)
    raise TimeoutError("no llm replica received a request")


async def test_an_llm_replica_stopped_mid_reply_finishes_it_and_exits_cleanly(stack: ReplicaStack) -> None:
    use_host_addresses(["127.0.0.1"])
    client = EdgeClient(stack.url("edge"))
    await client.connect(within=60)
    try:
        await greeted(client, within=TURN_WITHIN)
        replying = asyncio.create_task(say_and_wait_for_reply(client, UTTERANCES["0890"], TURN_WITHIN))
        busy = await first_to_take_a_request(stack, within=TURN_WITHIN)
        stopped_at = time.monotonic()
        stack.terminate("llm", busy)
        assert await readyz_turns_503(stack, "llm", busy), "/readyz still ready after SIGTERM"
        turn = await replying
        print(f"\nheard {turn.heard!r} -> replied {turn.replied!r}")
        assert turn.replied.strip() and not turn.interrupted and turn.reply_audio_at is not None
        code = await stack.wait_exit("llm", busy, within=GRACE_S + 10)
        took = time.monotonic() - stopped_at
        print(f"llm-{busy + 1} exited {code} {took:.1f} s after SIGTERM")
        assert code == 0 and took < GRACE_S
    finally:
        await client.close()


async def test_a_turns_replica_stopped_hands_its_conversation_over_with_the_history(
    stack: ReplicaStack,
) -> None:
    use_host_addresses(["127.0.0.1"])
    requests: list[m.LlmRequest] = []

    async def record(message: Any, _subject: str) -> None:
        requests.append(message)

    watcher = await Bus.connect(stack.nats_url, "test")
    await watcher.subscribe(LLM_REQUEST, record, queue="")  # a copy of every request, outside the group
    await watcher.flush()
    client = EdgeClient(stack.url("edge"))
    await client.connect(within=60)
    try:
        session = await greeted(client, within=TURN_WITHIN)
        ids = [stack.get("turns", i, "/healthz")[1]["replica"] for i in (0, 1)]
        owner = owner_of(stack, session, ids)
        first = await say_and_wait_for_reply(client, UTTERANCES["0870"], TURN_WITHIN)
        assert first.replied.strip()

        stack.terminate("turns", owner)
        # Idle between turns: the conversation goes back at the next renewal, and the replica exits.
        code = await stack.wait_exit("turns", owner, within=GRACE_S)
        assert code == 0
        other = 1 - owner
        # The edge reassigns at its next renewal and logs it through the stack's output
        # pump: the line can land just after the old replica is gone.
        for _ in range(30):  # 3 s
            if owner_of(stack, session, ids) == other:
                break
            await asyncio.sleep(0.1)
        assert owner_of(stack, session, ids) == other
        handed = stack.metric(
            "turns", other, "voice_agent_sessions_assigned_total", service="turns", handover="true"
        )
        assert handed >= 1

        second = await say_and_wait_for_reply(client, UTTERANCES["0890"], TURN_WITHIN)
        print(f"\nturn {first.turn_id}: {first.heard!r} -> {first.replied!r}")
        print(f"turn {second.turn_id}: {second.heard!r} -> {second.replied!r}")
        assert second.replied.strip() and not second.interrupted
    finally:
        await client.close()
        await watcher.close()

    request = next(r for r in reversed(requests) if r.session_id == session and r.turn_id == second.turn_id)
    said = [(c.role, normalize_words(c.content)) for c in request.messages]
    assert ("user", normalize_words(first.heard)) in said, said
    assert ("assistant", normalize_words(first.replied)) in said, said
    assert said[-1] == ("user", normalize_words(second.heard))
