"""Barge-in at the edge over loopback WebRTC and the real nats-server: a short
sound over the agent's voice does not touch it; sustained speech pauses it at
once, then words cut it (Cancel, the words heard so far, the ``interrupted``
event and hook) while a backchannel or no words in time resume it where it
stopped; with the timeout at 0 the cut comes at the decision; an uninterruptible
chunk plays out whatever the user says. The test plays stt: it publishes the
transcripts."""

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
from services.edge.session import EdgeSession
from services.edge.vad import SileroModel
from tests.edge_harness import PIECE, TONE_RATE, Peers, serve_edge
from tests.support import NatsServer, librivox_utterances
from tests.test_edge_service import sample
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


REPLY = "welcome to the voice agent, it is good to have you here with us today"
STOP_SECONDS = "voice_agent_edge_barge_in_stop_seconds"


def stop_metric() -> tuple[float, float]:
    """Count and sum of the onset -> silent histogram."""
    return sample(f"{STOP_SECONDS}_count", service="edge"), sample(f"{STOP_SECONDS}_sum", service="edge")


async def transcript(peers: Peers, sid: str, text: str, *, final: bool = False) -> float:
    """What stt would say of the user's newest generation; when it was published."""
    turn = peers.all(m.SpeechStarted)[-1].turn_id  # a pause may have made a new generation
    ids = {"session_id": sid, "turn_id": turn, "seq": peers.bus.next_seq(sid)}
    message = m.TranscriptFinal(**ids, text=text) if final else m.TranscriptPartial(**ids, text=text)
    await peers.bus.publish(s.TRANSCRIPT, message)
    return time.time()


def watch(session: EdgeSession) -> dict[str, float]:
    """When each speaking event reached the hooks (the first of each kind)."""
    seen: dict[str, float] = {}
    for name in sorted(HOOK_EVENTS):
        session.hooks.on(name, lambda e: seen.setdefault(str(e["type"]), time.time()))
    return seen


async def until(seen: dict[str, float], name: str, within: float = 5.0) -> float:
    deadline = time.monotonic() + within
    while name not in seen:
        assert time.monotonic() < deadline, f"no {name} in {within}s; saw {sorted(seen)}"
        await asyncio.sleep(0.01)
    return seen[name]


async def test_a_short_sound_does_not_pause_sustained_speech_does_and_words_cut(
    edge: EdgeService, client: EdgeClient, peers: Peers
) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    assert edge.manager is not None
    session = edge.manager.sessions[sid]
    hooked: list[dict[str, Any]] = []
    for name in sorted(HOOK_EVENTS):
        session.hooks.on(name, hooked.append)
    # Called at the cut: by then the buffer is flushed (the next frame is silence).
    playing_at_cut: list[int | None] = []
    session.hooks.on("interrupted", lambda _: playing_at_cut.append(session.playout.turn_id))
    paused_at: list[float] = []
    session.hooks.on("agent_paused", lambda _: paused_at.append(time.time()))
    stops_before = stop_metric()
    await play_tone(peers, sid, 0, 6.0, REPLY)
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == 0)
    await asyncio.sleep(0.4)
    blip = client.say(short_blip())
    await asyncio.sleep(1.2)
    assert blip.ended_at is not None
    assert paused_at == [] and peers.all(m.PlayoutFinished) == [], "160 ms of speech paused the agent"
    assert time.time() - (client.last_sound() or 0) < 0.1, "the agent's voice goes on"

    spoken = client.say(speech())
    paused = await client.wait_for_event("agent_paused", within=5)
    assert paused["turn_id"] == 0 and len(paused_at) == 1
    onset = peers.all(m.SpeechStarted)[-1].at
    assert spoken.started_at is not None and onset >= spoken.started_at
    print(f"speech onset -> agent paused: {(paused_at[0] - onset) * 1000:.0f} ms")
    assert 0.28 <= paused_at[0] - onset < 0.7  # 300 ms of speech, not 100
    count, total = stop_metric()
    assert count == stops_before[0] + 1 and 0.28 <= total - stops_before[1] < 0.7
    await asyncio.sleep(0.5)
    assert barge_ins(peers) == [] and peers.all(m.PlayoutFinished) == [], "a pause is not a cut"
    last = client.last_sound()
    assert last is not None
    print(f"agent paused -> last agent audio at the client: {(last - paused_at[0]) * 1000:.0f} ms")
    assert last - paused_at[0] < 0.3, "playout stops at once"  # plus transport and the jitter buffer

    said = await transcript(peers, sid, "He might even")
    cancel = await peers.wait_for(m.Cancel, within=2, where=lambda c: c.reason == "barge-in")
    assert cancel.turn_id == 0 and peers.when(cancel) - said < 0.2
    cut = await peers.wait_for(m.PlayoutFinished)
    assert (cut.turn_id, cut.interrupted) == (0, True)
    print(f"heard before the pause: {cut.heard_text!r}")
    assert REPLY.startswith(cut.heard_text) and 2 <= len(cut.heard_text.split()) < len(REPLY.split())
    assert playing_at_cut == [None]
    assert client.last_sound() == last, "the cut reply never resumed"

    event = await client.wait_for_event("interrupted")
    assert (event["turn_id"], event["heard_text"]) == (0, cut.heard_text)
    stopped = await client.wait_for_event("agent_stopped_speaking")
    assert stopped["interrupted"] is True and client.events.index(event) < client.events.index(stopped)
    assert client.events.index(paused) < client.events.index(event)
    await peers.wait_for(m.SpeechEnded, within=10, where=lambda x: x.at > onset)
    await client.wait_for_event("user_stopped_speaking", where=lambda e: e["turn_id"] > 1)
    hooked_types = [e["type"] for e in hooked]
    assert set(hooked_types) == HOOK_EVENTS - {"agent_resumed"}
    assert hooked_types.count("interrupted") == 1 and hooked_types.count("agent_paused") == 1
    assert next(e for e in hooked if e["type"] == "interrupted") == {
        "type": "interrupted",
        "turn_id": 0,
        "heard_text": cut.heard_text,
    }


async def false_interruption(
    edge: EdgeService, client: EdgeClient, peers: Peers, said: str | None, sound: np.ndarray | None = None
) -> dict[str, Any]:
    """``sound`` (default: a LibriVox sentence) over a 5 s reply, which stt hears as
    ``said`` (a final; None: nothing at all): the agent pauses, then resumes and plays
    its reply to the end; the ``agent_resumed`` event."""
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    assert edge.manager is not None
    seen = watch(edge.manager.sessions[sid])
    false_before = sample("voice_agent_edge_false_interruptions_total")
    began = await play_tone(peers, sid, 0, 5.0, REPLY)
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == 0)
    await asyncio.sleep(0.5)
    client.say(speech() if sound is None else sound)
    paused_at = await until(seen, "agent_paused")
    if said is not None:
        await asyncio.sleep(0.3)  # stt takes a moment
        await transcript(peers, sid, said, final=True)
    resumed_at = await until(seen, "agent_resumed", within=6)  # a sentence, then 1.5 s
    print(f"paused -> resumed ({said!r}): {(resumed_at - paused_at) * 1000:.0f} ms")
    if said is not None:
        assert resumed_at - paused_at < 0.3 + 0.3, "a final that says nothing resumes at once"
    await asyncio.sleep(0.3)
    resumed_sound = client.first_sound_after(resumed_at)
    assert resumed_sound is not None and resumed_sound - resumed_at < 0.3, "the voice did not resume"
    done = await peers.wait_for(m.PlayoutFinished, within=8)
    assert (done.turn_id, done.interrupted, done.heard_text) == (0, False, REPLY)
    await asyncio.sleep(0.3)
    # Every 20 ms of the reply reached the client: nothing was skipped over the pause.
    loud = [t for t, pcm in client.received if t >= began and np.sqrt(np.mean(pcm.astype(float) ** 2)) > 300]
    assert len(loud) * 0.02 >= 5.0 - 0.2
    assert peers.all(m.Cancel) == [] or all(c.reason == "speech resumed" for c in peers.all(m.Cancel))
    assert barge_ins(peers) == [] and "interrupted" not in seen
    assert sample("voice_agent_edge_false_interruptions_total") == false_before + 1
    return await client.wait_for_event("agent_resumed")


async def test_a_backchannel_pauses_the_agent_then_it_resumes_where_it_stopped(
    edge: EdgeService, client: EdgeClient, peers: Peers
) -> None:
    resumed = await false_interruption(edge, client, peers, "Mhm.")
    assert (resumed["turn_id"], resumed["reason"]) == (0, "says nothing")


async def test_no_words_in_time_resume_the_agent_after_the_timeout(
    edge: EdgeService, client: EdgeClient, peers: Peers
) -> None:
    # Half a second of voice: longer than the 300 ms that pause the agent, then quiet.
    resumed = await false_interruption(edge, client, peers, None, short_blip(500))
    assert (resumed["turn_id"], resumed["reason"]) == (0, "timeout")
    # The 1.5 s run from the moment the user stopped (the edge's SpeechPaused).
    stopped = peers.all(m.SpeechPaused)[-1].decided_at
    waited = resumed["received_at"] - stopped
    assert 1.4 <= waited < 1.8, waited


async def test_the_timeout_waits_while_the_user_goes_on_speaking(
    edge: EdgeService, client: EdgeClient, peers: Peers
) -> None:
    # A whole sentence and no transcript at all (a recognizer far behind): the agent
    # stays paused while the user talks, and resumes only 1.5 s after they stop.
    resumed = await false_interruption(edge, client, peers, None)
    paused = await client.wait_for_event("agent_paused")
    assert resumed["received_at"] - paused["received_at"] > 2.0  # the sentence is ~2.8 s
    stopped = peers.all(m.SpeechPaused)[-1].decided_at
    assert 1.4 <= resumed["received_at"] - stopped < 1.8


@pytest.mark.parametrize("edge", [{"EDGE_FALSE_INTERRUPTION_TIMEOUT_MS": "0"}], indirect=True)
async def test_with_no_pause_the_cut_comes_at_the_decision(client: EdgeClient, peers: Peers) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    await play_tone(peers, sid, 0, 6.0, REPLY)
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == 0)
    await asyncio.sleep(1.0)
    spoken = client.say(speech())
    cancel = await peers.wait_for(m.Cancel, within=5, where=lambda c: c.reason == "barge-in")
    assert cancel.turn_id == 0
    decided_at = peers.when(cancel)
    onset = peers.all(m.SpeechStarted)[-1].at
    assert spoken.started_at is not None and onset >= spoken.started_at
    print(f"speech onset -> barge-in Cancel: {(decided_at - onset) * 1000:.0f} ms")
    assert 0.28 <= decided_at - onset < 0.7
    cut = await peers.wait_for(m.PlayoutFinished)
    assert (cut.turn_id, cut.interrupted) == (0, True) and REPLY.startswith(cut.heard_text)
    assert 2 <= len(cut.heard_text.split()) < len(REPLY.split())
    await asyncio.sleep(0.5)
    last = client.last_sound()
    assert last is not None and last - decided_at < 0.3, "playout stops at once"
    assert not [e for e in client.events if e["type"] in ("agent_paused", "agent_resumed")]


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


async def test_a_cancel_from_the_bus_ends_a_paused_reply(
    edge: EdgeService, client: EdgeClient, peers: Peers
) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    assert edge.manager is not None
    seen = watch(edge.manager.sessions[sid])
    await play_tone(peers, sid, 0, 6.0, REPLY)
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == 0)
    await asyncio.sleep(1.0)
    client.say(speech())
    await until(seen, "agent_paused")
    await asyncio.sleep(0.3)
    # turns superseding the reply (the user's final had words) while it is paused.
    await peers.bus.publish(s.CONTROL, m.Cancel(session_id=sid, turn_id=0, seq=9, reason="superseded"))
    cut = await peers.wait_for(m.PlayoutFinished, within=2)
    assert (cut.turn_id, cut.interrupted) == (0, True)
    assert REPLY.startswith(cut.heard_text) and 2 <= len(cut.heard_text.split()) < len(REPLY.split())
    await asyncio.sleep(1.8)  # past the timeout: nothing resumes
    assert "agent_resumed" not in seen and "interrupted" not in seen and barge_ins(peers) == []
    last = client.last_sound()
    assert last is not None and last < peers.when(cut), "the cancelled reply played again"
