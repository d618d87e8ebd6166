"""This machine's floor for a bus hop: a bare nats-py publish in one process to the
callback in another, through a real nats-server on loopback, with none of our code
(no spans, no msgspec). The bench's hops (producer span to consumer span) cannot be
faster, so ``floor x hops`` says how much of the bus target a machine leaves at all.

Messages go out every ``gap_s`` (20 ms, an audio frame): the processes sleep between
them as they do in a call, so each hop pays for waking the server and the receiver.

``python -m bench.bus_floor`` prints it; ``python -m bench`` records it with each run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.agent import free_port
from bench.stats import percentile
from stack.process_group import nats_server_binary

SUBJECT = "bench.bus-floor"
SENT_AT = "sent-ns"
GAP_S = 0.02
COUNT = 200
# The hops on a turn's critical path that the bench counts: SpeechPaused edge -> stt,
# TranscriptFinal stt -> turns, LlmRequest turns -> llm, TextChunk llm -> tts, AudioChunk tts -> edge.
TURN_HOPS = 5
START_TIMEOUT_S = 10.0


def floor_record(hop_ms: list[float], hops: int, gap_s: float) -> dict[str, Any]:
    """p50/p90 of one bare hop and the least ``hops`` of them can take (``hops`` x p50)."""
    p50 = percentile(hop_ms, 50)
    return {
        "hop_p50_ms": round(p50, 3),
        "hop_p90_ms": round(percentile(hop_ms, 90), 3),
        "messages": len(hop_ms),
        "gap_ms": round(gap_s * 1000, 1),
        "hops": hops,
        "floor_ms": round(hops * p50, 2),
    }


@contextmanager
def nats_server() -> Iterator[str]:
    """A nats-server of its own on a free loopback port, stopped by PID; yields its URL."""
    port = free_port()
    server = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(5)


async def _subscribe(url: str, count: int) -> list[float]:
    """Receive ``count`` messages; each one's hop in ms from its send stamp."""
    import nats

    nc = await nats.connect(url)
    hops: list[float] = []
    done = asyncio.Event()

    async def on_message(msg: Any) -> None:
        hops.append((time.time_ns() - int(msg.headers[SENT_AT])) / 1e6)
        if len(hops) >= count:
            done.set()

    await nc.subscribe(SUBJECT, cb=on_message)
    await nc.flush()
    print("ready", flush=True)
    await done.wait()
    await nc.close()
    return hops


async def _publish(url: str, count: int, gap_s: float) -> None:
    import nats

    nc = await nats.connect(url)
    for _ in range(count):
        await nc.publish(SUBJECT, b"x" * 200, headers={SENT_AT: str(time.time_ns())})
        await asyncio.sleep(gap_s)
    await nc.flush()
    await nc.close()


def measure(url: str, count: int = COUNT, gap_s: float = GAP_S) -> list[float]:
    """``count`` bare hops (ms) from this process to a subscriber process of its own."""
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.bus_floor", "--receive", url, "--count", str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise RuntimeError("the bus-floor receiver did not start")
        asyncio.run(_publish(url, count, gap_s))
        out, _ = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    return [float(x) for x in json.loads(out)]


def measure_floor(hops: int, count: int = COUNT, gap_s: float = GAP_S) -> dict[str, Any]:
    """The floor record of ``hops`` hops, measured on a nats-server of its own."""
    with nats_server() as url:
        return floor_record(measure(url, count, gap_s), hops, gap_s)


def describe(floor: dict[str, Any]) -> str:
    return (
        f"this machine's floor for {floor['hops']} hops: {floor['floor_ms']:.2f} ms (a bare nats-py hop "
        f"through nats-server, message every {floor['gap_ms']:.0f} ms: p50 {floor['hop_p50_ms']:.2f} ms, "
        f"p90 {floor['hop_p90_ms']:.2f} ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bus_floor", description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=TURN_HOPS, help="hops the floor is for (a turn's: 5)")
    parser.add_argument("--count", type=int, default=COUNT, help="messages to time")
    parser.add_argument("--gap-ms", type=float, default=GAP_S * 1000, help="time between messages")
    parser.add_argument("--receive", metavar="URL", help=argparse.SUPPRESS)  # the subscriber process
    args = parser.parse_args()
    if args.receive:
        print(json.dumps(asyncio.run(_subscribe(args.receive, args.count))), flush=True)
        return 0
    print(describe(measure_floor(args.hops, args.count, args.gap_ms / 1000)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
