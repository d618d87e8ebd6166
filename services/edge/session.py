"""One WebRTC session: peer connection, its bus subscriptions, and the glue
between the pure parts (endpointing, playout, latency) and the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from nats.aio.subscription import Subscription

from proto import messages as m
from proto import subjects as s
from services.common.bus import Bus
from services.edge import barge_in, events
from services.edge.audio import ChunkResampler
from services.edge.config import Settings
from services.edge.endpointing import Ended, Endpointer, Event, Frame, Paused, Started
from services.edge.holding import Held, HeldTurn
from services.edge.ice import rtc_configuration
from services.edge.interruption import InterruptDecider
from services.edge.jitter import set_audio_prefetch
from services.edge.latency import LatencyTracker, TurnTraces
from services.edge.media import PlayoutTrack, read_microphone
from services.edge.metrics import (
    BARGE_IN_STOP,
    BARGE_INS,
    CONNECT,
    END_OF_TURN,
    FALSE_INTERRUPTIONS,
    FIRST_AUDIO_OUT,
    HELD_DROPPED,
    SERVICE,
    SPECULATIONS,
)
from services.edge.offer import OfferError, has_data_channel
from services.edge.playout import PlayoutBuffer, TurnFinished, TurnStarted
from services.edge.tuning import barge_in_config, endpoint_config, interrupt_config
from services.edge.vad import SileroModel

log = logging.getLogger(__name__)

# The edge's own Cancel of a speculation the user talked on through: what it
# voids was held, never played, so it leaves the agent's playing audio alone
# (only the barge-in decision may cut that).
SPEECH_RESUMED = "speech resumed"


class EdgeSession:
    """A browser's call: audio both ways, events on the data channel."""

    def __init__(
        self,
        session_id: str,
        bus: Bus,
        vad: SileroModel,
        settings: Settings,
        on_closed: Callable[[EdgeSession], None],
    ) -> None:
        self.id = session_id
        self.bus = bus
        self.settings = settings
        self._on_closed = on_closed
        self.pc = RTCPeerConnection(
            rtc_configuration(settings.ice_server_urls, settings.ice_username, settings.ice_credential)
        )
        self.endpointer = Endpointer(endpoint_config(settings))
        self.interruption = InterruptDecider(interrupt_config(settings))
        self.hooks = events.Hooks()  # the speaking events, in code
        self.vad = vad.stream()
        self.playout = PlayoutBuffer(ChunkResampler, reorder_wait=settings.reorder_wait_ms / 1000)
        # An interruption pauses playout, then cuts or resumes it (services/edge/barge_in.py).
        self.barge_in = barge_in.BargeIn(self.playout, barge_in_config(settings))
        self.track = PlayoutTrack(self.barge_in, self._on_playout)
        self.latency = LatencyTracker()
        self.traces = TurnTraces(session_id)  # one trace per user turn, rooted here
        # The agent's output for the user's open generation waits for its end.
        self.held = HeldTurn()
        self.channel: RTCDataChannel | None = None
        self._channel_open = asyncio.Event()
        self._wants_channel = False
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._offered_at = time.monotonic()
        self.connected = False
        self.closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def accept(self, offer_sdp: str) -> str:
        """Apply the offer and return the answer; OfferError for an SDP aiortc refuses."""
        self._wants_channel = has_data_channel(offer_sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError and others for SDP it cannot use
            log.info("offer rejected by aiortc: %s: %s", type(exc).__name__, exc)
            raise OfferError(400, "bad_sdp", f"the SDP was rejected: {exc}") from exc
        set_audio_prefetch(self.pc, self.settings.receive_jitter_frames)
        self.pc.addTrack(self.track)
        await self._subscribe()
        # aiortc gathers every ICE candidate inside setLocalDescription: the answer is complete.
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._spawn(self._connect_deadline())
        return str(self.pc.localDescription.sdp)

    async def _subscribe(self) -> None:
        # One subscription each: control (Cancel) never waits behind audio or text.
        for channel, handler, traced in (
            (s.CONTROL, self._on_control, True),
            (s.AUDIO_OUT, self._on_audio_out, True),  # the bus spans only each chunk's first piece
            (s.TRANSCRIPT, self._on_transcript, True),
            (s.LLM_STREAM, self._on_llm_stream, True),
            (s.STATE, self._on_state, True),
        ):
            sub = await self.bus.subscribe(channel, handler, session_id=self.id, traced=traced)
            self._subscriptions.append(sub)

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        try:
            current = asyncio.current_task()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            self.track.stop()
            for sub in self._subscriptions:
                with contextlib.suppress(Exception):  # the connection may already be closed
                    await sub.unsubscribe()
            ended = self.endpointer.close(time.time())
            if ended is not None:
                await self._speech_ended(ended)
            await self.pc.close()
            if self.connected:
                await self._publish(s.SESSION, m.SessionEnded(**self._ids(0), reason=reason))
        finally:
            self.traces.close()  # a reply cut by the hang-up still exports its spans
            self.bus.forget_session(self.id)
            self._on_closed(self)
        log.info("session %s closed (%s)", self.id, reason)

    # --- WebRTC callbacks ---------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(read_microphone(track, self.vad, self._on_frame))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != "events":
            return
        self.channel = channel
        if channel.readyState == "open":
            self._channel_open.set()
        channel.on("open", self._channel_open.set)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected:
            self.connected = True
            elapsed = time.monotonic() - self._offered_at
            CONNECT.labels("edge").observe(elapsed)
            log.info("session %s connected %.0f ms after its offer", self.id, elapsed * 1000)
            self._spawn(self._announce())
        elif state in ("failed", "closed"):
            self._spawn(self.close(state))

    async def _announce(self) -> None:
        if self._wants_channel and self.settings.datachannel_wait_ms:
            # Wait a moment for the events channel so the greeting's text is not lost.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._channel_open.wait(), self.settings.datachannel_wait_ms / 1000)
        await self._publish(s.SESSION, m.SessionStarted(**self._ids(0), started_at=time.time()))
        self.send(events.session(self.id))

    async def _connect_deadline(self) -> None:
        await asyncio.sleep(self.settings.connect_timeout_s)
        if not self.connected:
            self._spawn(self.close("connect_timeout"))

    # --- microphone -> bus --------------------------------------------------

    async def _on_frame(self, pcm: bytes, probability: float, captured_at: float) -> None:
        self.interruption.push(probability, captured_at)
        for event in self.endpointer.push(pcm, probability, captured_at):
            await self._on_speech(event)
        # Paused: the endpointer heard the first silent frame (speculate_after_ms).
        self.barge_in.user_speaking(self.endpointer.speaking and not self.endpointer.paused, captured_at)
        await self._maybe_barge_in()

    async def _on_speech(self, event: Event) -> None:
        if isinstance(event, Frame):
            frame = m.AudioFrame(**self._ids(event.turn_id), pcm=event.pcm, captured_at=event.captured_at)
            await self._publish(s.AUDIO_IN, frame, traced=False)
        elif isinstance(event, Started):
            await self._speech_started(event)
        elif isinstance(event, Paused):
            paused = m.SpeechPaused(
                **self._ids(event.turn_id), at=event.at, decided_at=time.time(), frame_count=event.frame_count
            )
            await self._publish(s.VAD, paused)
        else:
            await self._speech_ended(event)

    async def _speech_started(self, event: Started) -> None:
        self.interruption.started(event.turn_id, event.continues)
        dropped = self.held.open(event.turn_id, event.continues)
        if event.continues:
            # The user went on after a pause: whatever was started on the paused
            # generation is void. Cancel before SpeechStarted, so llm and tts stop
            # before anyone hears of the new generation.
            SPECULATIONS.labels(SERVICE, "discarded").inc()
            self._count_unheard(dropped)
            await self._publish(s.CONTROL, m.Cancel(**self._ids(event.continues), reason=SPEECH_RESUMED))
        started = m.SpeechStarted(**self._ids(event.turn_id), at=event.at, continues=event.continues)
        await self._publish(s.VAD, started)
        self.send(events.user_started(event.turn_id, event.continues))

    async def _speech_ended(self, event: Ended) -> None:
        self.latency.speech_ended(event.turn_id, event.at)
        self.interruption.ended()
        ended = m.SpeechEnded(
            **self._ids(event.turn_id), at=event.at, decided_at=time.time(), frame_count=event.frame_count
        )
        await self._publish(s.VAD, ended)
        END_OF_TURN.labels(SERVICE).observe(max(0.0, ended.decided_at - ended.at))
        self.send(events.user_stopped(event.turn_id))
        if event.paused:
            SPECULATIONS.labels(SERVICE, "confirmed").inc()
        # The end of the turn is confirmed: its speculative reply plays at once.
        await self._release(self.held.confirm(event.turn_id), time.time())

    async def _release(self, held: list[Held], now: float) -> None:
        for item in held:
            if isinstance(item, m.AudioChunk):
                await self._play(item, now)
            else:
                self.send(item)

    def _count_unheard(self, dropped: list[Held]) -> None:
        chunks = sum(isinstance(item, m.AudioChunk) for item in dropped)
        if chunks:
            HELD_DROPPED.inc(chunks)

    async def _maybe_barge_in(self) -> None:
        """User speech over the agent, if it counts: pause playout now (or cut it)."""
        if self.playout.turn_id is None or self.barge_in.busy:
            return
        if not self.interruption.decide(self.playout.interruptible):
            return
        self.interruption.cut()
        now = time.time()
        happened = self.barge_in.interrupt(self.interruption.utterance, self.interruption.onset, now)
        await self._on_playout(happened, now)

    async def _on_barge_in(self, event: barge_in.BargeInEvent) -> None:
        """A pause, a resume or a cut of the agent's voice: events, metrics, the bus."""
        if isinstance(event, barge_in.Paused):
            BARGE_IN_STOP.labels(SERVICE).observe(event.stop_seconds)
            self.send(events.agent_paused(event.turn_id))
        elif isinstance(event, barge_in.Resumed):
            FALSE_INTERRUPTIONS.inc()
            self.interruption.resumed()  # the rest of this utterance does not pause it again
            if event.was_paused:
                self.send(events.agent_resumed(event.turn_id, event.reason))
        else:
            BARGE_INS.inc()
            if event.stop_seconds is not None:
                BARGE_IN_STOP.labels(SERVICE).observe(event.stop_seconds)
            self.send(events.interrupted(event.turn_id, event.heard_text))
            await self._publish(s.CONTROL, m.Cancel(**self._ids(event.turn_id), reason="barge-in"))

    # --- playout -> bus -----------------------------------------------------

    async def _on_playout(self, happened: Sequence[barge_in.OutEvent], now: float) -> None:
        for event in happened:
            if isinstance(event, barge_in.Paused | barge_in.Resumed | barge_in.Committed):
                await self._on_barge_in(event)
            elif isinstance(event, TurnStarted):
                await self._publish(s.PLAYOUT, m.PlayoutStarted(**self._ids(event.turn_id), at=now))
                self.send(events.agent_started(event.turn_id))
                await self._report_latency(event.turn_id, now)
            elif isinstance(event, TurnFinished):
                finished = m.PlayoutFinished(
                    **self._ids(event.turn_id),
                    heard_text=event.heard_text,
                    interrupted=event.interrupted,
                    at=now,
                )
                await self._publish(s.PLAYOUT, finished)
                self.send(events.agent_stopped(event.turn_id, event.interrupted, event.heard_text))

    async def _report_latency(self, turn_id: int, now: float) -> None:
        figures = self.latency.audio_out(turn_id, now)
        if figures is None:
            return
        FIRST_AUDIO_OUT.labels("edge").observe(max(0.0, figures.first_audio_out_ms / 1000))
        message = m.TurnLatency(
            **self._ids(turn_id),
            stt_final_ms=figures.stt_final_ms,
            llm_first_token_ms=figures.llm_first_token_ms,
            tts_first_audio_ms=figures.tts_first_audio_ms,
            first_audio_out_ms=figures.first_audio_out_ms,
        )
        await self._publish(s.STATE, message)
        self.send(events.latency(figures))

    # --- bus -> session -----------------------------------------------------

    async def _on_audio_out(self, message: Any, _subject: str) -> None:
        if not isinstance(message, m.AudioChunk) or self.closed:
            return
        self.traces.reply_audio(message.turn_id)  # parents the reply's playout span
        now = time.time()
        if self.held.hold(message.turn_id, message):
            self.latency.tts_audio(message.turn_id, now)
        elif self.held.void(message.turn_id):
            self.bus.count_drop(s.AUDIO_OUT, "stale_turn")  # a discarded speculation's late audio
        else:
            await self._play(message, now)

    async def _play(self, chunk: m.AudioChunk, now: float) -> None:
        accepted, superseded = self.playout.push(chunk, now)
        if not accepted:
            self.bus.count_drop(s.AUDIO_OUT, "stale_turn")
        else:
            self.latency.tts_audio(chunk.turn_id, now)
        await self._on_playout(superseded, now)

    async def _on_control(self, message: Any, _subject: str) -> None:
        if isinstance(message, m.Cancel):
            self._count_unheard(self.held.discard(message.turn_id))
            if message.reason != SPEECH_RESUMED:
                await self._on_playout(self.playout.cancel(message.turn_id), time.time())

    async def _on_transcript(self, message: Any, _subject: str) -> None:
        if isinstance(message, m.TranscriptFinal):
            self.latency.stt_final(message.turn_id, time.time())
            # A final (speculative or not) heard the whole generation.
            self.endpointer.heard(message.turn_id, message.text, math.inf)
        elif isinstance(message, m.TranscriptPartial):
            self.endpointer.heard(message.turn_id, message.text, message.heard_until)
        self.interruption.heard(message.turn_id, message.text)
        self._forward(message)
        # Words (or a final saying nothing) decide a paused interruption; then the
        # words a decision waited for (min_words) may start one.
        confirmed = isinstance(message, m.TranscriptFinal) and not message.speculative
        await self._on_playout(self.barge_in.heard(message.turn_id, message.text, confirmed), time.time())
        await self._maybe_barge_in()

    async def _on_llm_stream(self, message: Any, _subject: str) -> None:
        if isinstance(message, m.LlmToken):
            self.latency.llm_token(message.turn_id, time.time())
        event = events.from_bus(message)
        if event is None or self.held.void(message.turn_id):
            return  # a discarded speculation is never shown, not even its cancelled end
        # The reply's words are shown only once the user's turn is over.
        if not self.held.hold(message.turn_id, event):
            self.send(event)

    async def _on_state(self, message: Any, _subject: str) -> None:
        self._forward(message)  # our own TurnLatency comes back here and is not forwarded

    # --- helpers ------------------------------------------------------------

    def _forward(self, message: Any) -> None:
        event = events.from_bus(message)
        if event is not None:
            self.send(event)

    def send(self, event: events.Event) -> None:
        """One JSON event to the browser, if its channel is open, and to the hooks."""
        self.hooks.emit(event)
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(events.encode(event))

    def _ids(self, turn_id: int) -> dict[str, Any]:
        return {"session_id": self.id, "turn_id": turn_id, "seq": self.bus.next_seq(self.id)}

    async def _publish(self, channel: s.Channel, message: msgspec.Struct, traced: bool = True) -> None:
        try:
            # In the span of the turn it is about: the user's utterance or the reply's playout.
            with self.traces.publishing(message):
                await self.bus.publish(channel, message, traced=traced)
        except Exception:  # a closed or reconnecting bus must not kill the call
            log.warning("session %s: publish on %s failed", self.id, channel.name, exc_info=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A dead microphone loop would otherwise fail silently: log it and end the call.
            log.error("session %s: task failed", self.id, exc_info=task.exception())
            if not self.closed:
                self._spawn(self.close("error"))
