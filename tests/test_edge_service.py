"""The edge end to end over loopback WebRTC and the real nats-server.

The test plays the other services: it watches the bus, publishes transcripts,
tokens and AudioChunks, and talks to the edge through tests/webrtc_client.py.
Works inside ``unshare -n`` (only lo) thanks to EDGE_ICE_HOST_ADDRESSES.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import numpy as np
import pytest
from prometheus_client import REGISTRY

from proto import messages as m
from proto import subjects as s
from services.edge.endpointing import Endpointer, Started
from services.edge.vad import SAMPLE_RATE as VAD_RATE
from services.edge.vad import WINDOW as VAD_WINDOW
from services.edge.vad import SileroModel
from tests.edge_harness import Peers, serve_edge
from tests.support import NatsServer, joined_with_pause, librivox_utterances
from tests.webrtc_client import EdgeClient

pytestmark = pytest.mark.e2e


@pytest.fixture
async def edge_url(nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    async with serve_edge(nats_server.url, monkeypatch) as (_service, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def client(edge_url: str, peers: Peers) -> AsyncIterator[EdgeClient]:
    # Depends on peers so the bus is watched before the session starts.
    client = EdgeClient(edge_url)
    await client.connect()
    print(f"offer -> connected: {client.connect_seconds * 1000:.0f} ms")
    yield client
    await client.close()


def dropped_undecodable() -> float:
    labels = {"service": "edge", "channel": "audio.out", "reason": "undecodable"}
    return REGISTRY.get_sample_value("voice_agent_bus_messages_dropped_total", labels) or 0.0


def offline_onset(pcm: np.ndarray) -> float:
    """Where the edge's VAD + endpointing put the start of speech in ``pcm``."""
    model = SileroModel()
    stream, endpointer = model.stream(), Endpointer()
    for i, frame in enumerate(pcm[: pcm.size // 320 * 320].reshape(-1, 320)):
        for event in endpointer.push(frame.tobytes(), stream.push(frame), i * 0.02):
            if isinstance(event, Started):
                return event.at
    raise AssertionError("no speech found offline")


def dominant_hz(samples: np.ndarray, rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / samples.size)


def one_utterance(peers: Peers, sid: str, ended: m.SpeechEnded) -> tuple[list[m.SpeechStarted], list[int]]:
    """One read sentence is one utterance. Its short pause after "not" may make a
    speculative pause: then it goes on as generation 2 (continuing 1), and so on."""
    speech = peers.all(m.SpeechStarted)
    assert (speech[0].session_id, speech[0].turn_id, speech[0].continues) == (sid, 1, 0)
    generations = [x.turn_id for x in speech]
    assert generations == list(range(1, len(speech) + 1))
    assert [x.continues for x in speech[1:]] == generations[:-1]
    resumed = peers.all(m.Cancel)
    assert [(c.turn_id, c.reason) for c in resumed] == [(t, "speech resumed") for t in generations[:-1]]
    assert [p.turn_id for p in peers.all(m.SpeechPaused)] == generations  # each paused once
    assert ended.turn_id == generations[-1] and ended.session_id == sid
    return speech, generations


async def test_utterance_in_reply_out(client: EdgeClient, peers: Peers, nats_server: NatsServer) -> None:
    started = await peers.wait_for(m.SessionStarted)
    sid = started.session_id
    utterance = next(u for u in librivox_utterances() if u.name.endswith("0880"))
    spoken = client.say(utterance.pcm16())

    ended = await peers.wait_for(m.SpeechEnded, within=15)
    speech, generations = one_utterance(peers, sid, ended)
    turn = ended.turn_id
    voiced = ended.at - speech[0].at
    assert 2.0 < voiced < 3.2, voiced  # the sentence is ~2.6 s of speech in a 3 s file
    # No transcript reached the edge here: paused for speculation, it waits for the final's
    # words as for a trailing-off transcript (900 ms), then ends the turn without them.
    assert ended.decided_at - ended.at == pytest.approx(0.9, abs=0.15)
    assert spoken.started_at is not None
    # The same VAD offline on the file says where speech starts in it; the rest is transport.
    mic_to_edge = speech[0].at - (spoken.started_at + offline_onset(utterance.pcm16()))
    print(f"mic -> edge (send to SpeechStarted.at, same VAD offline): {mic_to_edge * 1000:.0f} ms")
    # Online the VAD hears the audio through Opus, on the sender's frame grid: its onset may
    # come up to one window sooner than offline (a fresh clone measured -0.2 ms once).
    assert -VAD_WINDOW / VAD_RATE < mic_to_edge < 0.4
    session_event = await client.wait_for_event("session")
    assert session_event["session_id"] == sid
    await asyncio.sleep(0.8)  # more silence: the edge must send nothing between utterances
    frames = peers.all(m.AudioFrame)
    assert len(peers.all(m.AudioFrame, lambda f: f.turn_id == turn)) == ended.frame_count
    assert [f.turn_id for f in frames] == sorted(f.turn_id for f in frames)
    assert all(f.turn_id in generations and len(f.pcm) == 640 and f.sample_rate == 16000 for f in frames)
    for pause in peers.all(m.SpeechPaused):
        assert pause.frame_count <= len(peers.all(m.AudioFrame, lambda f, t=pause.turn_id: f.turn_id == t))
    # Pre-roll (300 ms) + speech + endpoint silence (900 ms), in 20 ms frames.
    assert voiced + 1.0 <= len(frames) * 0.02 <= voiced + 1.4
    await client.wait_for_event("user_started_speaking", where=lambda e: e["turn_id"] == 1)
    await client.wait_for_event("user_stopped_speaking", where=lambda e: e["turn_id"] == turn)

    ids = {"session_id": sid, "turn_id": turn}
    await peers.bus.publish(s.TRANSCRIPT, m.TranscriptFinal(**ids, seq=1, text=utterance.text))
    await peers.bus.publish(s.LLM_STREAM, m.LlmToken(**ids, seq=2, text="Hello", index=0))
    began = await peers.say_audio(sid, turn, 1.0, "hello there")
    finished = await peers.wait_for(m.PlayoutFinished, within=5)
    assert (finished.turn_id, finished.heard_text, finished.interrupted) == (turn, "hello there", False)
    assert peers.all(m.PlayoutStarted, lambda x: x.turn_id == turn)
    await asyncio.sleep(0.3)  # the last frames travel
    heard = client.first_sound_after(began)
    assert heard is not None
    print(f"AudioChunk published -> audible at the client: {(heard - began) * 1000:.0f} ms")
    tone = client.audio_between(heard, heard + 0.8)
    assert abs(dominant_hz(tone) - 440) < 10

    event = await client.wait_for_event("transcript", where=lambda e: e["final"])
    assert event["text"] == utterance.text
    await client.wait_for_event("agent_text", where=lambda e: e["text"] == "Hello")
    await client.wait_for_event("agent_started_speaking", where=lambda e: e["turn_id"] == turn)
    stopped = await client.wait_for_event("agent_stopped_speaking")
    assert stopped["interrupted"] is False
    latency = await client.wait_for_event("latency")
    figures = await peers.wait_for(m.TurnLatency)
    assert latency["first_audio_out_ms"] == figures.first_audio_out_ms > latency["stt_final_ms"] >= 0

    # Garbage on the session's audio subject is counted and dropped; the call goes on.
    before = dropped_undecodable()
    raw = await nats.connect(nats_server.url)
    await raw.publish(s.AUDIO_OUT.subject(sid), b"\xc1 not msgpack")
    await raw.drain()
    await asyncio.sleep(0.2)
    assert dropped_undecodable() == before + 1
    began = await peers.say_audio(sid, turn + 1, 0.6, "again", freq=660.0)
    await peers.wait_for(m.PlayoutFinished, where=lambda x: x.turn_id == turn + 1)
    await asyncio.sleep(0.3)
    again = client.first_sound_after(began)
    assert again is not None and abs(dominant_hz(client.audio_between(again, again + 0.4)) - 660) < 15

    closed_at = time.time()
    await client.close()
    ended_session = await peers.wait_for(m.SessionEnded, within=10)
    assert ended_session.session_id == sid
    print(f"client close -> SessionEnded: {(peers.when(ended_session) - closed_at) * 1000:.0f} ms")


async def test_barge_in_and_bus_cancel_stop_playout(client: EdgeClient, peers: Peers) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    welcome = "welcome to the voice agent"
    began = await peers.say_audio(sid, 0, 4.0, welcome)
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == 0)
    await asyncio.sleep(0.5)
    client.say(next(u for u in librivox_utterances() if u.name.endswith("0930")).pcm16())

    # Speech pauses the agent; the words of its transcript make that a cut.
    paused = await client.wait_for_event("agent_paused", within=5)
    assert paused["turn_id"] == 0
    turn = peers.all(m.SpeechStarted)[-1].turn_id
    partial = m.TranscriptPartial(session_id=sid, turn_id=turn, seq=peers.bus.next_seq(sid), text="He might")
    await peers.bus.publish(s.TRANSCRIPT, partial)
    cancel = await peers.wait_for(m.Cancel, within=5, where=lambda c: c.reason != "speech resumed")
    assert (cancel.turn_id, cancel.reason) == (0, "barge-in")
    cut = await peers.wait_for(m.PlayoutFinished)
    assert (cut.turn_id, cut.interrupted) == (0, True)
    assert welcome.startswith(cut.heard_text) and cut.heard_text != welcome  # what played before the pause
    assert peers.all(m.SpeechStarted)[0].turn_id == 1
    assert paused["received_at"] - began < 3.0  # well before the 4 s reply would have ended
    await asyncio.sleep(0.5)
    last = client.last_sound()
    assert last is not None and last - paused["received_at"] < 0.3, "playout stops at once"
    event = await client.wait_for_event("agent_stopped_speaking")
    assert event["interrupted"] is True

    # A Cancel from the bus (turns superseding a reply) flushes too.
    turn = (await peers.wait_for(m.SpeechEnded, within=10)).turn_id
    began = await peers.say_audio(sid, turn, 4.0, "a long answer")
    await peers.wait_for(m.PlayoutStarted, where=lambda x: x.turn_id == turn)
    await asyncio.sleep(0.3)
    await peers.bus.publish(s.CONTROL, m.Cancel(session_id=sid, turn_id=turn, seq=9, reason="superseded"))
    cut = await peers.wait_for(m.PlayoutFinished, where=lambda x: x.turn_id == turn)
    assert cut.interrupted and "a long answer".startswith(cut.heard_text)
    assert time.time() - began < 2.0


async def pause_after(peers: Peers, seconds: float) -> m.SpeechPaused:
    """The first pause ``seconds`` into the utterance: Opus and the VAD may see a short
    dip early on, which resumes at once; the pause this test is about comes later."""
    started = await peers.wait_for(m.SpeechStarted, within=15)
    return await peers.wait_for(m.SpeechPaused, within=15, where=lambda x: x.at - started.at > seconds)


async def speculate(peers: Peers, sid: str, turn: int, text: str) -> float:
    """Play stt, llm and tts on a pause: a speculative final, a token, 1 s of audio."""
    ids = {"session_id": sid, "turn_id": turn}
    final = m.TranscriptFinal(**ids, seq=peers.bus.next_seq(sid), text=text, speculative=True)
    await peers.bus.publish(s.TRANSCRIPT, final)
    await peers.bus.publish(
        s.LLM_STREAM, m.LlmToken(**ids, seq=peers.bus.next_seq(sid), text="Sure", index=0)
    )
    return await peers.say_audio(sid, turn, 1.0, "sure thing")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_speculative_reply_plays_only_once_the_turn_has_ended(
    client: EdgeClient, peers: Peers
) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    confirmed = sample("voice_agent_speculations_total", service="edge", outcome="confirmed")
    utterance = next(u for u in librivox_utterances() if u.name.endswith("0930"))  # no inner pause
    client.say(utterance.pcm16())
    paused = await pause_after(peers, 2.0)  # ~2.6 s of speech
    began = await speculate(peers, sid, paused.turn_id, "He might even have been made amiable himself.")

    ended = await peers.wait_for(m.SpeechEnded, within=5)
    assert ended.turn_id == paused.turn_id
    # The speculative final read complete: the shorter silence (250 ms, in 20 ms frames).
    assert ended.decided_at - ended.at == pytest.approx(0.26, abs=0.05)
    started = await peers.wait_for(m.PlayoutStarted, within=5)
    assert peers.when(started) >= peers.when(ended), "nothing plays before the end of the turn"
    await peers.wait_for(m.PlayoutFinished, within=5)
    await asyncio.sleep(0.3)
    heard = client.first_sound_after(began)
    assert heard is not None and heard >= peers.when(ended)
    assert abs(dominant_hz(client.audio_between(heard, heard + 0.5)) - 440) < 10
    print(f"speculative audio ready {(peers.when(ended) - began) * 1000:.0f} ms before the end of the turn")

    text = await client.wait_for_event("agent_text", where=lambda e: e["text"] == "Sure")
    stopped = await client.wait_for_event("user_stopped_speaking")
    assert text["received_at"] >= stopped["received_at"]  # the reply's words wait too
    spec = await client.wait_for_event("transcript", where=lambda e: e["speculative"])
    assert spec["final"] is False
    latency = await client.wait_for_event("latency")
    # Measured from the end of speech; the audio was there before the end was confirmed.
    silence_ms = (ended.decided_at - ended.at) * 1000
    assert latency["tts_first_audio_ms"] < silence_ms <= latency["first_audio_out_ms"]
    assert sample("voice_agent_speculations_total", service="edge", outcome="confirmed") == confirmed + 1


async def test_speech_resumed_discards_the_speculative_reply_unheard(
    client: EdgeClient, peers: Peers
) -> None:
    sid = (await peers.wait_for(m.SessionStarted)).session_id
    discarded = sample("voice_agent_speculations_total", service="edge", outcome="discarded")
    first, second = (next(u for u in librivox_utterances() if u.name.endswith(n)) for n in ("0930", "0880"))
    # A 500 ms pause: longer than the first silent frame, shorter than the 900 ms that
    # end a turn whose transcript trails off (which the speculative final below does).
    client.say(joined_with_pause(first.pcm16(), second.pcm16(), 0.5))
    paused = await pause_after(peers, 2.0)
    began = await speculate(peers, sid, paused.turn_id, "He might even have been made, um")

    cancel = await peers.wait_for(m.Cancel, within=5, where=lambda c: c.turn_id == paused.turn_id)
    assert cancel.reason == "speech resumed"
    resumed = await peers.wait_for(m.SpeechStarted, where=lambda x: x.continues == paused.turn_id)
    assert resumed.turn_id == paused.turn_id + 1 and peers.when(cancel) <= peers.when(resumed)
    # The page's event for this resumption (a shorter gap earlier in 0930, with no final to
    # end it, can be a continuation of its own).
    event = await client.wait_for_event(
        "user_started_speaking", where=lambda e: e["continues"] == paused.turn_id
    )
    assert (event["turn_id"], event["continues"]) == (resumed.turn_id, paused.turn_id)
    await peers.wait_for(m.SpeechEnded, within=15)
    await asyncio.sleep(0.5)
    assert client.first_sound_after(began) is None, "the discarded reply was heard"
    assert peers.all(m.PlayoutStarted) == []
    assert not [e for e in client.events if e["type"] == "agent_text"], "the discarded reply was shown"
    assert sample("voice_agent_speculations_total", service="edge", outcome="discarded") >= discarded + 1
