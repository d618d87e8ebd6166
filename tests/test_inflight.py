"""What a draining llm or tts replica waits for, and the runner's bounded drain."""

from __future__ import annotations

import asyncio
import time

from proto.messages import AudioChunk, TextChunk
from services.common.inflight import InFlight
from services.common.runner import Graceful, _drain
from services.tts.inflight import ChunksInFlight


def chunk(turn: int, index: int, session: str = "s") -> TextChunk:
    return TextChunk(session_id=session, turn_id=turn, seq=0, text="Hi.", index=index)


def audio(turn: int, index: int, final: bool, session: str = "s") -> AudioChunk:
    return AudioChunk(
        session_id=session,
        turn_id=turn,
        seq=0,
        chunk_index=index,
        part=0,
        pcm=b"",
        sample_rate=22050,
        final_part=final,
    )


def test_in_flight_counts_repeats_and_forgets_what_is_moot() -> None:
    work: InFlight[tuple[str, int]] = InFlight()
    work.add(("s", 1))
    work.add(("s", 1))  # the same turn asked twice (a retry): two replies to wait for
    work.add(("t", 1))
    work.done(("s", 1))
    assert len(work) == 2
    work.discard(lambda key: key[0] == "t")
    work.done(("s", 1))
    work.done(("s", 1))  # a stray done is harmless
    assert len(work) == 0


def test_a_chunk_is_in_flight_until_its_last_piece_or_a_cancel_or_a_newer_turn() -> None:
    chunks = ChunksInFlight()
    chunks.accepted(chunk(1, 0))
    chunks.accepted(chunk(1, 1))
    chunks.spoken(audio(1, 0, final=False))
    assert len(chunks) == 2
    chunks.spoken(audio(1, 0, final=True))
    assert len(chunks) == 1
    chunks.accepted(chunk(2, 0))  # the Speaker drops what is left of turn 1
    assert len(chunks) == 1
    chunks.cancelled("s", 2)
    chunks.accepted(chunk(3, 0, session="other"))
    chunks.ended("other")
    assert len(chunks) == 0


async def test_wait_idle_returns_when_done_or_at_the_deadline() -> None:
    work: InFlight[str] = InFlight()
    work.add("x")
    assert not await work.wait_idle(time.monotonic() + 0.1)
    asyncio.get_running_loop().call_later(0.05, work.done, "x")
    assert await work.wait_idle(time.monotonic() + 5)


async def test_the_runner_drain_ends_at_the_grace_or_at_a_second_signal() -> None:
    drained: list[float] = []

    async def slow_drain(deadline: float) -> None:
        drained.append(deadline)
        await asyncio.sleep(60)

    async def stop() -> None:
        pass

    graceful = Graceful(stop, slow_drain)
    started = time.monotonic()
    await _drain(graceful, 0.2, asyncio.Event())
    assert 0.2 <= time.monotonic() - started < 1.0
    assert drained and abs(drained[0] - (started + 0.2)) < 0.05

    again = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, again.set)
    started = time.monotonic()
    await _drain(graceful, 30, again)
    assert time.monotonic() - started < 1.0
