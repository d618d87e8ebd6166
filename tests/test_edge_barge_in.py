"""Barge-in at the edge over loopback WebRTC and the real nats-server: a short
sound over the agent's voice does not cut it, sustained speech does (Cancel,
silence at the client, the ``interrupted`` event and hook), an uninterruptible
chunk plays out whatever the user says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from proto import messages as m
from proto import subjects as s
from services.edge.events import HOOK_EVENTS
from services.edge.service import EdgeService
from services.edge.vad import SileroModel
from tests.edge_harness import serve_edge
from tests.support import NatsServer, librivox_utterances
from tests.test_edge_service import PIECE, TONE_RATE, Peers
from tests.webrtc_client import EdgeClient

pytestmark = pytest.mark.e2e


@pytest.fixture
async def edge(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[EdgeService]:
    env = getattr(request, "param", {})  # more settings, by parametrize
    async with serve_edge(nats_server.url, monkeypatch, env) as (service, _port):
        yield service


@pytest.fixture
async def peers(nats_server: NatsServer) -> AsyncIterator[Peers]:
    peers = await Peers.connect(nats_server.url)
    yield peers
    await peers.bus.close()


@pytest.fixture
async def client(edge: EdgeService, peers: Peers) -> AsyncIterator[EdgeClient]:
    client = EdgeClient(f"http://127.0.0.1:{edge.settings.http_port}")
    await client.connect()
    yield client
    await client.close()


async def play_tone(
    peers: Peers, session: str, turn: int, seconds: float, text: str, *, interruptible: bool = True
) -> float:
    """A tone as tts sends it (200 ms pieces of one text chunk); when publishing began."""
    t = np.arange(int(TONE_RATE * seconds)) / TONE_RATE
    signal = (np.sin(2 * np.pi * 440.0 * t) * 12000).astype(np.int16)
    began = time.time()
    for part, start in enumerate(range(0, signal.size, PIECE)):
        last = start + PIECE >= signal.size
        chunk = m.AudioChunk(
            session_id=session, turn_id=turn, seq=peers.bus.next_seq(session), chunk_index=0, part=part,
            pcm=signal[start : start + PIECE].tobytes(), sample_rate=TONE_RATE,
            text=text if part == 0 else "", final_part=last, last_chunk=last,
            allow_interruptions=interruptible,
        )  # fmt: skip
        await peers.bus.publish(s.AUDIO_OUT, chunk, traced=False)
    return began


def speech() -> np.ndarray:
    return next(u for u in librivox_utterances() if u.name.endswith("0930")).pcm16()


def short_blip(ms: int = 160) -> np.ndarray:
    """``ms`` from the middle of the longest voiced run of the utterance (offline VAD):
    speech, but shorter than the 300 ms that make an interruption."""
    pcm = speech()
    stream = SileroModel().stream()
    voiced = [stream.push(f) >= 0.5 for f in pcm[: pcm.size // 320 * 320].reshape(-1, 320)]
    best, run = (0, 0), 0
    for i, v in enumerate(voiced):
        run = run + 1 if v else 0
        if run > best[0]:
            best = (run, i - run + 1)
    length, first = best
    assert length * 20 >= ms + 200, "no long voiced run to cut a blip from"
    middle = (first + length // 2) * 320
    return pcm[middle : middle + ms * 16]


def barge_ins(peers: Peers) -> list[m.Cancel]:
    return peers.all(m.Cancel, lambda c: c.reason == "barge-in")


async def test_a_short_sound_does_not_cut_but_sustained_speech_does(
    edge: EdgeService, client: EdgeClient, peers: Peers
) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    assert edge.manager is not None
    session = edge.manager.sessions[sid]
    hooked: list[dict[str, Any]] = []
    for name in sorted(HOOK_EVENTS):
        session.hooks.on(name, hooked.append)
    # Called at the decision: by then the buffer is flushed (the next frame is silence).
    playing_at_cut: list[int | None] = []
    session.hooks.on("interrupted", lambda _: playing_at_cut.append(session.playout.turn_id))
    await play_tone(peers, sid, 0, 6.0, "a long welcome")
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == 0)
    await asyncio.sleep(0.4)
    blip = client.say(short_blip())
    await asyncio.sleep(1.2)
    assert blip.ended_at is not None
    assert barge_ins(peers) == [] and peers.all(m.PlayoutFinished) == [], "160 ms of speech cut the agent"
    assert time.time() - (client.last_sound() or 0) < 0.1, "the agent's voice goes on"

    spoken = client.say(speech())
    cancel = await peers.wait_for(m.Cancel, within=5, where=lambda c: c.reason == "barge-in")
    assert cancel.turn_id == 0
    decided_at = peers.when(cancel)
    onset = peers.all(m.SpeechStarted)[-1].at
    assert spoken.started_at is not None and onset >= spoken.started_at
    print(f"speech onset -> barge-in Cancel: {(decided_at - onset) * 1000:.0f} ms")
    assert 0.28 <= decided_at - onset < 0.7  # 300 ms of speech, not 100
    cut = await peers.wait_for(m.PlayoutFinished)
    assert (cut.turn_id, cut.interrupted, cut.heard_text) == (0, True, "a long welcome")
    await asyncio.sleep(0.5)
    last = client.last_sound()
    assert last is not None
    print(f"barge-in Cancel -> last agent audio at the client: {(last - decided_at) * 1000:.0f} ms")
    assert last - decided_at < 0.3, "playout stops at once"  # plus transport and the client's jitter buffer
    assert playing_at_cut == [None]

    event = await client.wait_for_event("interrupted")
    assert (event["turn_id"], event["heard_text"]) == (0, "a long welcome")
    stopped = await client.wait_for_event("agent_stopped_speaking")
    assert stopped["interrupted"] is True and client.events.index(event) < client.events.index(stopped)
    await peers.wait_for(m.SpeechEnded, within=10, where=lambda x: x.at > onset)
    await client.wait_for_event("user_stopped_speaking", where=lambda e: e["turn_id"] > 1)
    hooked_types = [e["type"] for e in hooked]
    assert set(hooked_types) == HOOK_EVENTS
    assert hooked_types.count("interrupted") == 1
    assert next(e for e in hooked if e["type"] == "interrupted") == {
        "type": "interrupted",
        "turn_id": 0,
        "heard_text": "a long welcome",
    }


async def test_an_uninterruptible_chunk_plays_to_its_end(client: EdgeClient, peers: Peers) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    began = await play_tone(peers, sid, 0, 2.5, "please listen", interruptible=False)
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == 0)
    await asyncio.sleep(0.3)
    client.say(speech())
    done = await peers.wait_for(m.PlayoutFinished, within=5)
    assert (done.turn_id, done.interrupted, done.heard_text) == (0, False, "please listen")
    assert barge_ins(peers) == []
    started = await peers.wait_for(m.SpeechStarted)  # the user's utterance goes on as usual
    assert started.turn_id == 1 and peers.when(started) < peers.when(done)
    first = client.first_sound_after(began)
    last = client.last_sound()
    assert first is not None and last is not None
    print(f"uninterruptible 2.5 s chunk heard for {(last - first) * 1000:.0f} ms")
    assert last - first > 2.3
    assert (await peers.wait_for(m.SpeechEnded, within=10)).turn_id >= 1
    assert [e for e in client.events if e["type"] == "interrupted"] == []


@pytest.mark.parametrize("edge", [{"EDGE_INTERRUPT_MIN_WORDS": "3"}], indirect=True)
async def test_min_words_waits_for_the_partial_transcript(client: EdgeClient, peers: Peers) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    await play_tone(peers, sid, 0, 6.0, "a long welcome")
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == 0)
    client.say(speech())
    await peers.wait_for(m.SpeechStarted)
    await asyncio.sleep(0.8)  # well past 300 ms of speech: the words are missing
    assert barge_ins(peers) == []
    # (A pause and resume may have happened: its Cancel of the speculation leaves playout alone.)
    assert peers.all(m.PlayoutFinished) == []

    async def partial(text: str) -> float:
        turn = peers.all(m.SpeechStarted)[-1].turn_id  # a pause may have made a new generation
        ids = {"session_id": sid, "turn_id": turn, "seq": peers.bus.next_seq(sid)}
        await peers.bus.publish(s.TRANSCRIPT, m.TranscriptPartial(**ids, text=text))
        return time.time()

    await partial("He might")
    await asyncio.sleep(0.3)
    assert barge_ins(peers) == [], "two words cut with min_words=3"
    sent = await partial("He might even")
    cancel = await peers.wait_for(m.Cancel, within=2, where=lambda c: c.reason == "barge-in")
    print(f"third word's partial -> barge-in Cancel: {(peers.when(cancel) - sent) * 1000:.0f} ms")
    assert cancel.turn_id == 0 and peers.when(cancel) - sent < 0.2
    event = await client.wait_for_event("interrupted")
    assert event["turn_id"] == 0
