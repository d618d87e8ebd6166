"""`python -m stack` with several replicas of the services, each on a port of its own,
and what the tests ask of one replica: its /metrics, /readyz, pid, a SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Any

from stack.process_group import SERVICES
from tests.stack_process import StackProcess
from tests.support import free_port, metric_value


class ReplicaStack(StackProcess):
    def __init__(self, replicas: dict[str, int], env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        taken = {*self.ports.values(), self.nats_port}
        self.replica_ports: dict[str, list[int]] = {}
        for service in SERVICES:
            ports = [self.ports[service]] + [_fresh_port(taken) for _ in range(replicas.get(service, 1) - 1)]
            self.replica_ports[service] = ports
            self.env[f"{service.upper()}_REPLICAS"] = str(len(ports))
            self.env[f"{service.upper()}_HTTP_PORTS"] = ",".join(map(str, ports))
        self.env.pop("STACK_REPLICAS", None)

    def start(self, timeout: float = 300.0) -> ReplicaStack:
        super().start(timeout)
        return self

    def name(self, service: str, index: int) -> str:
        """The runner's name for the replica (its log prefix)."""
        return service if len(self.replica_ports[service]) == 1 else f"{service}-{index + 1}"

    def url(self, service: str, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.replica_ports[service][index]}"

    def metrics_of(self, service: str, index: int) -> str:
        with urllib.request.urlopen(f"{self.url(service, index)}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def metric(self, service: str, index: int, name: str, /, **labels: str) -> float:
        return metric_value(self.metrics_of(service, index), name, **labels)

    def get(self, service: str, index: int, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.url(service, index)}{path}", timeout=5) as response:
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), json.loads(error.read())

    def pid(self, service: str, index: int) -> int:
        return int(self.get(service, index, "/healthz")[1]["pid"])

    def terminate(self, service: str, index: int) -> int:
        """SIGTERM one replica, as Kubernetes does; returns its pid."""
        pid = self.pid(service, index)
        os.kill(pid, signal.SIGTERM)
        return pid

    def exit_code(self, service: str, index: int) -> int | None:
        """Its exit code once the runner has seen it exit (its log line), else None."""
        marker = f"{self.name(service, index)} exited with code "
        for line in self.log_path.read_text(errors="replace").splitlines():
            if marker in line:
                return int(line.split(marker, 1)[1].split(";", 1)[0])
        return None

    async def wait_exit(self, service: str, index: int, within: float) -> int:
        deadline = time.monotonic() + within
        while (code := self.exit_code(service, index)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name(service, index)} still running after {within}s")
            await asyncio.sleep(0.1)
        return code


def _fresh_port(taken: set[int]) -> int:
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port
