"""The thin NATS adapter every service uses.

It encodes and decodes the proto unions, carries W3C trace context and the send
time in headers, and turns a bad message into a log line and a counter instead
of a crash. Service logic never imports nats; it gets a Bus.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
from proto.subjects import Channel
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
        """Publish ``message`` on its session's subject of ``channel``."""
        session_id = getattr(message, "session_id", None)
        subject = channel.subject(session_id)
        headers = {SENT_AT_HEADER: str(time.time_ns())}
        data = codec.encode(message)
        if traced:
            with telemetry.tracer().start_as_current_span(
                f"{channel.name} publish",
                kind=trace.SpanKind.PRODUCER,
                attributes=_messaging_attributes(subject, "publish", len(data), message),
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

        return await self._nc.subscribe(subject, queue=group, cb=on_message)

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
        parent = telemetry.extract_context(headers)
        token = otel_context.attach(parent)
        try:
            if traced:
                with telemetry.tracer().start_as_current_span(
                    f"{channel.name} process",
                    kind=trace.SpanKind.CONSUMER,
                    attributes=_messaging_attributes(msg.subject, "process", len(msg.data), message),
                ):
                    await handler(message, msg.subject)
            else:
                await handler(message, msg.subject)
        except Exception:
            metrics.BUS_DROPPED.labels(*labels, "handler_error").inc()
            log.exception("handler failed for %s on %s", type(message).__name__, msg.subject)
        finally:
            otel_context.detach(token)

    async def flush(self) -> None:
        """Round-trip to the server: every subscription made so far is in place."""
        await self._nc.flush()

    def count_drop(self, channel: Channel, reason: str) -> None:
        metrics.BUS_DROPPED.labels(self.service, channel.name, reason).inc()

    async def close(self) -> None:
        if self._nc.is_connected:
            try:
                await self._nc.drain()
            except Exception:  # already closing: nothing left to drain
                log.debug("drain failed", exc_info=True)


def _unreachable(url: str, exc: BaseException) -> StartupError:
    return StartupError(
        f"cannot reach NATS at {url} ({exc.__class__.__name__}): start nats-server "
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
