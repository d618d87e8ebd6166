"""The thin NATS adapter every service uses.

It encodes and decodes the proto unions, carries W3C trace context and the send
time in headers, and turns a bad message into a log line and a counter instead
of a crash. Service logic never imports nats; it gets a Bus.

Spans: a PRODUCER span per publish and a CONSUMER span per delivery, except for the
messages that come in runs (20 ms audio frames, LLM tokens, audio pieces): only the
first of a run gets spans, the others carry the trace context in their headers alone,
so a handler still runs in its turn's trace without a span per frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoServersError
from opentelemetry import context as otel_context
from opentelemetry import trace

from proto import codec
from proto import messages as m
from proto.subjects import Channel, Endpoint
from services.common import metrics, telemetry
from services.common.errors import StartupError

log = logging.getLogger(__name__)

Handler = Callable[[Any, str], Awaitable[None]]
SENT_AT_HEADER = "va-sent-ns"


class Bus:
    """Publishes and subscribes proto messages on one NATS connection."""

    def __init__(self, nc: NatsClient, service: str) -> None:
        self._nc = nc
        self.service = service
        self._seq: defaultdict[str, int] = defaultdict(int)

    @classmethod
    async def connect(cls, url: str, service: str) -> Bus:
        # nats-py retries a first connect forever when reconnects are allowed, so
        # check the server answers first and fail with one clear line if not.
        await _check_reachable(url)

        async def on_error(exc: Exception) -> None:
            log.warning("nats: %s", exc)

        try:
            nc = await nats.connect(
                url,
                name=f"voice-agent-{service}",
                connect_timeout=2,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                reconnect_time_wait=0.5,
                error_cb=on_error,
            )
        except (NoServersError, OSError, TimeoutError) as exc:
            raise _unreachable(url, exc) from exc
        return cls(nc, service)

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    def next_seq(self, session_id: str) -> int:
        self._seq[session_id] += 1
        return self._seq[session_id]

    def forget_session(self, session_id: str) -> None:
        self._seq.pop(session_id, None)

    async def publish(self, channel: Channel, message: msgspec.Struct, *, traced: bool = True) -> None:
        """Publish ``message`` on its session's subject of ``channel``.

        ``traced=False``: no span even for a message that would get one; the
        current trace context still rides in the headers."""
        session_id = getattr(message, "session_id", None)
        subject = channel.subject(session_id)
        headers = {SENT_AT_HEADER: str(time.time_ns())}
        data = codec.encode(message)
        if traced and wants_span(message):
            with telemetry.tracer().start_as_current_span(
                f"{channel.name} publish",
                kind=trace.SpanKind.PRODUCER,
                attributes=_messaging_attributes(subject, "publish", len(data), message),
                record_exception=False,  # see _handle_in_span
            ):
                telemetry.inject_headers(headers)
                await self._nc.publish(subject, data, headers=headers)
        else:
            telemetry.inject_headers(headers)
            await self._nc.publish(subject, data, headers=headers)
        metrics.BUS_PUBLISHED.labels(self.service, channel.name).inc()

    async def subscribe(
        self,
        channel: Channel,
        handler: Handler,
        *,
        session_id: str | None = None,
        queue: str | None = None,
        traced: bool = True,
    ) -> Subscription:
        """Call ``handler(message, subject)`` for each message on ``channel``.

        One subscription runs its handler one message at a time, so control
        channels get subscriptions of their own and long work goes to tasks.
        """
        subject = channel.subject(session_id) if session_id else channel.wildcard
        group = queue if queue is not None else (channel.queue_group or "")

        async def on_message(msg: Msg) -> None:
            await self._dispatch(channel, handler, msg, traced)

        subscription = await self._nc.subscribe(subject, queue=group, cb=on_message)
        _watch_queue(self.service, channel, subscription)
        return subscription

    async def _dispatch(self, channel: Channel, handler: Handler, msg: Msg, traced: bool) -> None:
        labels = (self.service, channel.name)
        metrics.BUS_RECEIVED.labels(*labels).inc()
        headers = msg.headers or {}
        sent_ns = headers.get(SENT_AT_HEADER)
        if sent_ns and sent_ns.isdigit():
            metrics.BUS_HOP.labels(*labels).observe(max(0.0, (time.time_ns() - int(sent_ns)) / 1e9))
        try:
            message = codec.decode(channel, msg.data)
        except codec.DecodeError as exc:
            metrics.BUS_DROPPED.labels(*labels, "undecodable").inc()
            log.warning("dropped undecodable message on %s: %s", msg.subject, exc)
            return
        token = otel_context.attach(telemetry.extract_context(headers))
        try:
            if traced and wants_span(message):
                await self._handle_in_span(channel, handler, msg, message)
            else:
                await handler(message, msg.subject)
        except Exception:
            metrics.BUS_DROPPED.labels(*labels, "handler_error").inc()
            log.exception("handler failed for %s on %s", type(message).__name__, msg.subject)
        finally:
            otel_context.detach(token)

    async def _handle_in_span(self, channel: Channel, handler: Handler, msg: Msg, message: Any) -> None:
        # No exception events on the span: an exception's message may quote a transcript
        # or a URL with credentials. Its class is enough to find the log line.
        with telemetry.tracer().start_as_current_span(
            f"{channel.name} process",
            kind=trace.SpanKind.CONSUMER,
            attributes=_messaging_attributes(msg.subject, "process", len(msg.data), message),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await handler(message, msg.subject)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(trace.StatusCode.ERROR)
                raise

    async def flush(self) -> None:
        """Every subscription made so far is in place on the server.

        Two round trips, not one: nats-py writes a flush's PING at once, ahead of
        commands (a SUB) still queued for its flusher task, so the first PONG can
        come back before the server has the SUB. The second PING goes out after them.
        """
        await self._nc.flush()
        await self._nc.flush()

    # --- request/reply (session assignment: proto.subjects.Endpoint) --------

    async def request(self, endpoint: Endpoint, subject: str, message: msgspec.Struct, within: float) -> Any:
        """Send ``message`` to ``subject`` and return the decoded answer.

        None when nobody listens there (NATS "no responders": the replica is
        gone or unsubscribed); TimeoutError when no usable answer came ``within`` s.
        """
        from nats.errors import Error as NatsError
        from nats.errors import NoRespondersError

        try:
            reply = await self._nc.request(subject, codec.encode(message), timeout=within)
            return codec.decode_union(endpoint.reply_union, reply.data)
        except NoRespondersError:
            return None
        except (NatsError, codec.DecodeError, TimeoutError) as exc:  # timeout, reconnecting, bad answer
            raise TimeoutError(f"no answer on {subject}: {type(exc).__name__}") from exc

    async def serve(
        self,
        endpoint: Endpoint,
        subject: str,
        handler: Callable[[Any], Awaitable[msgspec.Struct | None]],
        *,
        queue: str = "",
    ) -> Subscription:
        """Answer requests on ``subject`` with ``handler(request)`` (None: no answer)."""

        async def on_request(msg: Msg) -> None:
            try:
                answer = await handler(codec.decode_union(endpoint.union, msg.data))
                if answer is not None and msg.reply:
                    await msg.respond(codec.encode(answer))
            except Exception:  # a bad request or a failed handler: the asker times out
                log.exception("request on %s failed", msg.subject)

        return await self._nc.subscribe(subject, queue=queue, cb=on_request)

    def count_drop(self, channel: Channel, reason: str) -> None:
        metrics.BUS_DROPPED.labels(self.service, channel.name, reason).inc()

    async def close(self) -> None:
        if self._nc.is_connected:
            try:
                await self._nc.drain()
            except Exception:  # already closing: nothing left to drain
                log.debug("drain failed", exc_info=True)


def wants_span(message: Any) -> bool:
    """Whether ``message`` gets producer and consumer spans: all but the followers of a
    run. An AudioFrame never does (50 a second; its turn's root span covers it), an
    LlmToken only the first of a reply, an AudioChunk only the first piece of each
    text chunk (the hop that decides when the reply is heard)."""
    if isinstance(message, m.AudioFrame):
        return False
    if isinstance(message, m.LlmToken):
        return message.index == 0
    if isinstance(message, m.AudioChunk):
        return message.part == 0
    return True


# Live subscriptions per (service, channel), for the queue-depth gauge. Weak: a
# subscription the service dropped is not kept alive by its metric.
_QUEUES: dict[tuple[str, str], weakref.WeakSet[Subscription]] = {}


def _watch_queue(service: str, channel: Channel, subscription: Subscription) -> None:
    """Report the messages waiting in ``subscription``'s client-side queue (nats-py runs
    one subscription's callbacks one at a time: a slow handler shows up here first)."""
    key = (service, channel.name)
    if key not in _QUEUES:
        live = _QUEUES[key] = weakref.WeakSet()
        metrics.QUEUE_DEPTH.labels(service, f"bus:{channel.name}").set_function(lambda: _pending(live))
    _QUEUES[key].add(subscription)


def _pending(subscriptions: weakref.WeakSet[Subscription]) -> int:
    # An unsubscribed subscription keeps whatever was queued, but nobody will read it.
    return sum(sub.pending_msgs for sub in list(subscriptions) if not sub._closed)


def _unreachable(url: str, exc: BaseException) -> StartupError:
    return StartupError(
        f"cannot reach NATS at {telemetry.redact_url(url)} ({exc.__class__.__name__}): start nats-server "
        "(`make run` starts one) or set NATS_URL"
    )


async def _check_reachable(url: str) -> None:
    first = url.split(",")[0]
    parsed = urlsplit(first if "://" in first else f"nats://{first}")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout=3
        )
    except (OSError, TimeoutError) as exc:
        raise _unreachable(url, exc) from exc
    writer.close()


def _messaging_attributes(subject: str, operation: str, size: int, message: Any) -> dict[str, Any]:
    return {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": operation,
        "messaging.message.body.size": size,
        "voice_agent.message": type(message).__name__,
        "voice_agent.session_id": getattr(message, "session_id", ""),
        "voice_agent.turn_id": getattr(message, "turn_id", -1),
    }
