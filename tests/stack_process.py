"""The whole agent as `make run` starts it (`python -m stack`), on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from stack.process_group import SERVICES
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


class StackProcess:
    """`python -m stack` in a subprocess; its output goes to a log file."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.ports = {service: free_port() for service in SERVICES}
        self.nats_port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="voice-agent-stack-", suffix=".log")[1])
        self.env = dict(os.environ)
        self.env.update({f"{s.upper()}_HTTP_PORT": str(p) for s, p in self.ports.items()})
        self.env.update(
            {
                "STACK_NATS_PORT": str(self.nats_port),
                "EDGE_ICE_HOST_ADDRESSES": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['edge']}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def start(self, timeout: float = 300.0) -> StackProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stack"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stack exited {self.proc.returncode}:\n{self.log_tail()}")
            if b"Voice agent ready" in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"stack not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def metrics(self, service: str) -> str:
        url = f"http://127.0.0.1:{self.ports[service]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def children(self) -> list[int]:
        """PIDs of the processes the runner started (nats-server and the services)."""
        if not self.proc:
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def stop(self) -> list[int]:
        """Ctrl-C the runner, as a user would; returns the PIDs it left running."""
        started = self.children()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return [pid for pid in started if Path(f"/proc/{pid}").exists()]
