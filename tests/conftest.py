from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack_process import StackProcess
from tests.support import NatsServer


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def agent_stack() -> Iterator[StackProcess]:
    """The whole agent as `make run` starts it, shared by the end-to-end tests."""
    process = StackProcess().start()
    assert len(process.children()) == 6  # nats-server and the five services
    yield process
    leftover = process.stop()
    assert not leftover, f"Ctrl-C left processes running: {leftover}"
