"""The agent under test: `python -m stack` in a subprocess on free loopback ports,
with the JSON-lines span exporter writing into the run's folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from stack.process_group import SERVICES

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AgentStack:
    """Start with ``start()``, stop with ``stop()`` (Ctrl-C, as a user would).

    Spans are batched in each service and flushed when it exits: read the traces
    file only after ``stop()``.
    """

    def __init__(self, run_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.ports = {service: free_port() for service in SERVICES}
        self.nats_port = free_port()
        self.log_path = run_dir / "stack.log"
        self.traces_path = run_dir / "traces.jsonl"
        self.env = dict(os.environ)
        self.env.update({f"{s.upper()}_HTTP_PORT": str(p) for s, p in self.ports.items()})
        self.env.update(
            {
                "STACK_NATS_PORT": str(self.nats_port),
                "EDGE_ICE_HOST_ADDRESSES": "127.0.0.1",
                "OTEL_TRACES_EXPORTER": "jsonl",
                "VOICE_AGENT_TRACES_FILE": str(self.traces_path),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.update(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['edge']}/"

    def start(self, timeout_s: float = 600.0) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stack"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited with {self.proc.returncode}:\n{self.log_tail()}")
            if b"Voice agent ready" in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the agent was not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
