from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import NatsServer


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    yield server
    server.stop()
