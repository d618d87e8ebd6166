from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.edge_harness import Peers
from tests.stack_process import StackProcess
from tests.support import NatsServer


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def agent_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """The whole agent as `make run` starts it, shared by the end-to-end tests. Its spans
    go to a JSON-lines file (`env["VOICE_AGENT_TRACES_FILE"]`), exported every 0.5 s."""
    traces = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    process = StackProcess(
        env={
            "OTEL_TRACES_EXPORTER": "jsonl",
            "VOICE_AGENT_TRACES_FILE": str(traces),
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        }
    ).start()
    assert len(process.children()) == 6  # nats-server and the five services
    yield process
    leftover = process.stop()
    assert not leftover, f"Ctrl-C left processes running: {leftover}"


@pytest.fixture
async def peers(nats_server: NatsServer) -> AsyncIterator[Peers]:
    """The rest of the agent, as the edge tests play it: watches and publishes."""
    peers = await Peers.connect(nats_server.url)
    yield peers
    await peers.bus.close()
