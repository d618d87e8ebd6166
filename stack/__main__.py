"""``python -m stack``: start nats-server and the five services (STACK_REPLICAS or
<SERVICE>_REPLICAS processes each); Ctrl-C stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from stack.process_group import Stack, StackConfig


async def _main() -> int:
    config = StackConfig(
        nats_port=int(os.environ.get("STACK_NATS_PORT", "4222")),
        start_nats=os.environ.get("STACK_START_NATS", "1") != "0",
    )
    stack = Stack(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.create_task(stack.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            return 130
        starting.result()
        urls = " or ".join(f"{edge.url}/" for edge in config.instances("edge"))
        print(f"\nVoice agent ready: open {urls} and press Talk (Ctrl-C stops it)\n", flush=True)
        died = asyncio.create_task(stack.wait())
        await asyncio.wait({died, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if died.done():
            print(f"{died.result()} exited; stopping everything", file=sys.stderr)
            return 1
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await stack.stop()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main()))
