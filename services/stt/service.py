"""The stt service on the bus: a thin adapter around DecodePlanner and a recognizer.

Handlers only record audio and VAD events (they never decode); a worker task per
decode lane (services/stt/lanes.py) asks the planner for the lane's next decode
and runs it on the lane's thread and recognizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import threading
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from proto.messages import (
    Handover,
    SessionEnded,
    SessionStarted,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    TranscriptFinal,
    TranscriptPartial,
)
from proto.subjects import AUDIO_IN, SESSION, TRANSCRIPT, VAD, Channel
from services.common import metrics, telemetry
from services.common.assignment import AssignedSessions, Route
from services.common.bus import Bus
from services.common.probes import Readiness
from services.common.runner import Graceful, Stop, main
from services.stt.config import Settings
from services.stt.engine import SAMPLE_RATE, SpeechRecognizer
from services.stt.lanes import DecodeLane, load_lane
from services.stt.planner import DecodePlanner, Job, Outcome
from services.stt.tracing import DecodeTraces
from services.stt.window import transcribe_in_window

log = logging.getLogger(__name__)

SERVICE = "stt"

PARTIALS = Counter(f"{metrics.PREFIX}_stt_partials", "Partial transcripts published", ["service"])
SPECULATIVE = Counter(
    f"{metrics.PREFIX}_stt_speculative_finals",
    "Speculative finals published (decoded at a pause, before the end of the turn)",
    ["service"],
)
DOUBTFUL = Counter(
    f"{metrics.PREFIX}_stt_doubtful_decodes",
    "Decodes the recognizer doubted, by the reason: a partial is dropped, a final redone in a wider window",
    ["service", "kind", "reason"],
)
ABANDONED = Counter(
    f"{metrics.PREFIX}_stt_partials_abandoned",
    "Partials stopped between their decode steps: a final or speculative final of the utterance was out",
    ["service"],
)
FINAL_LATENCY = metrics.latency_histogram(
    "stt_final_latency", "SpeechEnded received -> TranscriptFinal published"
)
WINDOWED = Counter(
    f"{metrics.PREFIX}_stt_window_decodes",
    "Decodes by what they heard (services/stt/window.py): the whole utterance, only its newest "
    "seconds stitched to the partial before, or the whole after all (unanchored, doubtful)",
    ["service", "kind", "how"],
)
DECODE_SECONDS = Histogram(
    f"{metrics.PREFIX}_stt_decode_seconds",
    "Time of one recognizer call",
    ["service", "kind"],
    buckets=metrics.LATENCY_BUCKETS,
)


class SttService:
    def __init__(
        self,
        bus: Bus,
        lanes: list[DecodeLane],
        planner: DecodePlanner,
        replica_id: str | None = None,
        window_s: float = 0.0,
    ) -> None:
        self._bus = bus
        self._window_s = window_s  # see services/stt/window.py; 0 = every decode hears it all
        self._lanes = lanes
        self._engine = lanes[0].engine
        self._planner = planner
        self._traces = DecodeTraces()  # the workers decode in the trace of the turn
        # Audio, VAD and session each get a subscription per owned session: nats-py
        # runs one subscription's callbacks in order, so VAD never waits behind audio.
        routes = [
            Route(AUDIO_IN, self._on_audio, traced=False),
            Route(VAD, self._on_vad),
            Route(SESSION, self._on_session),
        ]
        self._assignment = AssignedSessions(bus, SERVICE, routes, self, replica_id=replica_id)
        self._speaking: dict[str, int] = {}  # session -> utterance whose final is not out yet

    async def start(self) -> None:
        for lane in self._lanes:
            lane.worker = asyncio.create_task(self._run(lane), name=f"stt-worker-{lane.lane}")
        await self._assignment.start()

    @property
    def lanes(self) -> tuple[DecodeLane, ...]:
        return tuple(self._lanes)

    @property
    def healthy(self) -> bool:
        return all(lane.worker is not None and not lane.worker.done() for lane in self._lanes)

    @property
    def engine(self) -> str:
        return self._engine

    async def drain(self, deadline: float) -> None:
        """Sessions go back to the edge between utterances; a new owner takes the next one."""
        await self._assignment.drain(deadline)

    async def stop(self) -> None:
        await self._assignment.stop()
        for lane in self._lanes:
            if lane.worker is not None:
                lane.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.worker
            # A decode in flight finishes in its thread; nobody waits for it.
            lane.executor.shutdown(wait=False, cancel_futures=True)

    # --- session assignment (services.common.assignment.SessionState) -------

    def acquired(self, session_id: str, handover: Handover | None) -> None:
        # Opened now: it may have been here before (closed sessions stay refused).
        self._planner.open(session_id, time.monotonic())
        metrics.ACTIVE_SESSIONS.labels(SERVICE).set(self._planner.active_sessions)

    def released(self, session_id: str) -> Handover | None:
        self._planner.close(session_id)
        self._speaking.pop(session_id, None)
        self._bus.forget_session(session_id)
        self._traces.forget(session_id)
        metrics.ACTIVE_SESSIONS.labels(SERVICE).set(self._planner.active_sessions)
        return None  # the next owner starts with the next utterance: nothing to hand over

    def idle(self, session_id: str) -> bool:
        return session_id not in self._speaking

    # --- handlers: record, never decode -------------------------------------

    async def _on_audio(self, message: Any, _subject: str) -> None:
        self._note(AUDIO_IN, self._planner.on_frame(message, time.monotonic()), message)

    async def _on_vad(self, message: Any, _subject: str) -> None:
        now = time.monotonic()
        if isinstance(message, SpeechStarted):
            sid = message.session_id
            self._speaking[sid] = max(message.turn_id, self._speaking.get(sid, 0))
            self._note(VAD, self._planner.on_speech_started(message, now), message)
        elif isinstance(message, SpeechPaused):
            self._note(VAD, self._planner.on_speech_paused(message, now), message)
        elif isinstance(message, SpeechEnded):
            self._note(VAD, self._planner.on_speech_ended(message, now), message)

    async def _on_session(self, message: Any, _subject: str) -> None:
        if isinstance(message, SessionStarted):
            self._planner.open(message.session_id, time.monotonic())
        elif isinstance(message, SessionEnded):
            self._planner.close(message.session_id)
            self._bus.forget_session(message.session_id)
            self._traces.forget(message.session_id)
        self._note(SESSION, Outcome.ACCEPTED)

    def _note(self, channel: Channel, outcome: Outcome, message: Any = None) -> None:
        if outcome is Outcome.ACCEPTED:
            self._traces.note(message)  # the handler's trace context, for the workers
            self._wake_lanes()
        else:
            self._bus.count_drop(channel, outcome.value)
        metrics.ACTIVE_SESSIONS.labels(SERVICE).set(self._planner.active_sessions)

    # --- the worker ---------------------------------------------------------

    async def _run(self, lane: DecodeLane) -> None:
        while True:
            try:
                await self._step(lane)
            except Exception:
                # A bug in one step must not stop transcription for every session.
                log.exception("stt worker step failed")
                await asyncio.sleep(0.1)

    async def _step(self, lane: DecodeLane) -> None:
        # Cleared before looking, so a message arriving during a decode leaves
        # the event set and the next look sees it.
        lane.wake.clear()
        now = time.monotonic()
        for session_id in self._planner.expire(now):
            log.info("session %s idle: forgotten", session_id)
            self._bus.forget_session(session_id)
            self._traces.forget(session_id)
            metrics.ACTIVE_SESSIONS.labels(SERVICE).set(self._planner.active_sessions)
        job = self._planner.next_job(now, lane.lane)
        if job is None:
            await self._sleep(lane, self._planner.next_deadline(), now)
            return
        text: str | None = None
        if job.kind == "partial" and lane.abandon is not None:
            lane.abandon.clear()
        # Decode and publish in the turn's trace: the worker is outside every handler.
        token = otel_context.attach(self._traces.context_for(job))
        try:
            with lane.busy():
                text = await self._decode(job, lane)
                if await self._publish(job, text):
                    self._abandon_partial_of(job)
        finally:
            otel_context.detach(token)
            self._traces.finished(job)
            self._planner.finish(job, text)
            self._wake_lanes()  # the other lane may have waited for this one's result

    def _abandon_partial_of(self, job: Job) -> None:
        """``job``'s transcript is out: a partial of the same utterance still decoding
        would say nothing new, so it stops at its next step (one waiting for this
        lane to be idle stops at once)."""
        for lane in self._lanes:
            running = self._planner.running(lane.lane)
            if (
                lane.abandon is not None
                and running is not None
                and running.kind == "partial"
                and (running.session_id, running.turn_id) == (job.session_id, job.turn_id)
            ):
                lane.abandon.set()

    def _wake_lanes(self) -> None:
        for lane in self._lanes:
            lane.wake.set()

    async def _sleep(self, lane: DecodeLane, deadline: float | None, now: float) -> None:
        timeout = None if deadline is None else max(0.0, deadline - now)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lane.wake.wait(), timeout)

    async def _decode(self, job: Job, lane: DecodeLane) -> str | None:
        """The job's text; None for a failed partial (a failed final is "")."""
        if job.text is not None:
            return job.text  # a partial already heard the whole utterance
        with telemetry.tracer().start_as_current_span(
            "stt decode", attributes=self._decode_attributes(job), record_exception=False
        ) as span:
            started = time.perf_counter()
            try:
                loop = asyncio.get_running_loop()
                decode = functools.partial(
                    transcribe_in_window,
                    lane.recognizer,
                    job.samples,
                    job.heard_before,
                    interim=job.kind == "partial",
                    window_s=self._window_s,
                )
                text, how = await loop.run_in_executor(lane.executor, decode)
            except Exception as exc:
                metrics.ENGINE_ERRORS.labels(SERVICE, self._engine).inc()
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(trace.StatusCode.ERROR)
                log.exception("%s decode failed (session %s turn %d)", job.kind, job.session_id, job.turn_id)
                # The turn manager still needs to know the utterance is over.
                return "" if job.kind == "final" else None
            if text is None and lane.abandon is not None and lane.abandon.is_set():
                ABANDONED.labels(SERVICE).inc()
                span.set_attribute("voice_agent.stt.abandoned", True)
                return None
            DECODE_SECONDS.labels(SERVICE, job.kind).observe(time.perf_counter() - started)
            WINDOWED.labels(SERVICE, job.kind, how).inc()
            span.set_attribute("voice_agent.stt.window", how)
            if text is None and job.kind == "final":
                text = ""  # only an interim may come back without text
            span.set_attributes(telemetry.text_attributes("voice_agent.transcript", text or ""))
            doubt = getattr(lane.recognizer, "last_doubt", "")  # engines that doubt nothing lack it
            if doubt:
                DOUBTFUL.labels(SERVICE, job.kind, doubt).inc()
                span.set_attribute("voice_agent.stt.doubt", doubt)
            return text

    def _decode_attributes(self, job: Job) -> dict[str, str | int | float]:
        return {
            "voice_agent.session_id": job.session_id,
            "voice_agent.turn_id": job.turn_id,
            "voice_agent.decode_kind": job.kind,
            "voice_agent.audio_seconds": round(job.samples.size / SAMPLE_RATE, 3),
            "voice_agent.engine": self._engine,
        }

    async def _publish(self, job: Job, text: str | None) -> bool:
        """Publish the job's transcript; True if it was a final or speculative final."""
        if text is None or not self._planner.is_open(job.session_id):
            return False  # failed partial, or the session ended meanwhile: nobody listens
        try:
            if job.kind == "final":
                await self._publish_final(job, text)
                return True
            if job.kind == "speculative":
                return await self._publish_speculative(job, text)
            if text and self._planner.wants_partial(job):
                await self._publish_partial(job, text)
        except Exception:
            log.exception("cannot publish %s transcript of session %s", job.kind, job.session_id)
        return False

    async def _publish_partial(self, job: Job, text: str) -> None:
        sid = job.session_id
        partial = TranscriptPartial(
            session_id=sid,
            turn_id=job.turn_id,
            seq=self._bus.next_seq(sid),
            text=text,
            heard_until=job.heard_until,
        )
        await self._bus.publish(TRANSCRIPT, partial)
        PARTIALS.labels(SERVICE).inc()

    async def _publish_speculative(self, job: Job, text: str) -> bool:
        if not self._planner.is_live(job):
            return False  # the user went on while we decoded: nobody may act on it
        sid = job.session_id
        final = TranscriptFinal(
            session_id=sid,
            turn_id=job.turn_id,
            seq=self._bus.next_seq(sid),
            text=text,
            speech_ended_at=job.paused.at if job.paused is not None else 0.0,
            speculative=True,
            heard_until=job.heard_until,
        )
        await self._bus.publish(TRANSCRIPT, final)
        SPECULATIVE.labels(SERVICE).inc()
        return True

    async def _publish_final(self, job: Job, text: str) -> None:
        sid = job.session_id
        ended_at = job.speech_ended.at if job.speech_ended is not None else 0.0
        final = TranscriptFinal(
            session_id=sid,
            turn_id=job.turn_id,
            seq=self._bus.next_seq(sid),
            text=text,
            speech_ended_at=ended_at,
            heard_until=job.heard_until,
        )
        await self._bus.publish(TRANSCRIPT, final)
        if self._speaking.get(sid, -1) <= job.turn_id:
            self._speaking.pop(sid, None)  # between utterances: the session may move now
        latency = time.monotonic() - job.ended_received_at
        FINAL_LATENCY.labels(SERVICE).observe(latency)
        log.info(
            "final session %s turn %d: %.0f ms after SpeechEnded, %.1f s of audio%s",
            sid,
            job.turn_id,
            latency * 1000,
            job.samples.size / SAMPLE_RATE,
            " (text known before the end)" if job.text is not None else "",
        )


async def start_with(
    bus: Bus,
    settings: Settings,
    recognizer: SpeechRecognizer | None = None,
    replica_id: str | None = None,
    urgent_recognizer: SpeechRecognizer | None = None,
) -> SttService:
    """Load and warm the recognizers (unless given), subscribe, start the workers.
    Given a ``recognizer`` (tests), a second lane runs only on ``urgent_recognizer``."""
    if recognizer is None and settings.parallel_finals:
        urgent = await load_lane(settings, "urgent")
        try:
            partial = await load_lane(
                settings,
                "partial",
                yield_to=urgent.idle,
                abandon=threading.Event(),
                nicer_by=settings.partial_nice,
            )
            lanes = [partial, urgent]
        except BaseException:
            urgent.executor.shutdown(wait=False)
            raise
    elif recognizer is None:
        lanes = [await load_lane(settings, "any")]
    elif urgent_recognizer is None:
        lanes = [DecodeLane("any", recognizer)]
    else:
        lanes = [
            DecodeLane("partial", recognizer, abandon=threading.Event()),
            DecodeLane("urgent", urgent_recognizer),
        ]
    planner = DecodePlanner(
        partial_interval_s=settings.partial_interval_ms / 1000,
        final_wait_s=settings.final_wait_ms / 1000,
        session_idle_s=settings.session_idle_s,
        reuse_partials=settings.reuse_partials,
    )
    service = SttService(bus, lanes, planner, replica_id, window_s=settings.window_s)
    await service.start()
    metrics.ACTIVE_SESSIONS.labels(SERVICE).set(0)
    metrics.QUEUE_DEPTH.labels(SERVICE, "decode").set_function(lambda: planner.pending(time.monotonic()))
    metrics.count_engine_errors_from(SERVICE, service.engine)
    return service


async def start(bus: Bus, readiness: Readiness) -> Stop:
    service = await start_with(bus, Settings())
    # A dead worker would swallow audio silently: report not ready instead.
    readiness.checks.append(lambda: service.healthy)
    return Graceful(service.stop, service.drain)


def run() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        # One line, like the runner's start-up errors, not a traceback.
        problems = "; ".join(f"STT_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        print(f"{SERVICE}: error: {problems}", file=sys.stderr)
        raise SystemExit(2) from None
    main(SERVICE, settings, start)
