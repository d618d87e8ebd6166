"""The Grafana dashboards against a real Prometheus scraping the running agent.

Debian's `prometheus` runs on a free loopback port with deploy/prometheus/prometheus.yml
(ports replaced by the stack's), a Python WebRTC client holds a two-turn conversation,
two LLM replies are cancelled on the bus (the barge-in panel), and then every query of
every panel must return data, and every latency panel a number.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proto.messages import Cancel, ChatMessage, LlmDone, LlmRequest, LlmToken, SessionEnded
from proto.subjects import CONTROL, LLM_REQUEST, LLM_STREAM, SESSION
from services.common.bus import Bus
from services.edge.ice import use_host_addresses
from tests.stack_process import StackProcess
from tests.support import free_port, librivox_utterances, wait_for_port
from tests.test_deploy_grafana import PROMETHEUS, queries
from tests.webrtc_client import EdgeClient

pytestmark = pytest.mark.e2e
SCRAPE = "1s"
# The whole test fits in this window; Grafana would put its own $__rate_interval there.
WINDOW = "10m"


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/v1/query", params={"query": expr}) as response,
        ):
            body = await response.json()
        assert body["status"] == "success", (expr, body)
        return list(body["data"]["result"])


@pytest.fixture
def prometheus(agent_stack: StackProcess, tmp_path: Path) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus not found: scripts/install-system.sh installs Debian's")
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = SCRAPE
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            group["targets"] = [f"127.0.0.1:{agent_stack.ports[group['labels']['component']]}"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        wait_until_ready(f"http://127.0.0.1:{port}/-/ready", proc)
        yield Prometheus(port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_until_ready(url: str, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, "prometheus exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {within}s")


async def wait_until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.5)


async def converse(edge_url: str) -> None:
    """The greeting and two turns: every per-turn histogram gets two observations
    (Prometheus' rate() needs a series to grow after its first scrape)."""
    utterances = {u.name.rsplit("-", 1)[-1]: u for u in librivox_utterances()}
    client = EdgeClient(edge_url)
    await client.connect()
    try:
        await client.wait_for_event("agent_stopped_speaking", within=60, where=lambda e: e["turn_id"] == 0)
        replied = 0
        for name in ("0930", "0870"):
            client.say(utterances[name].pcm16())
            # The edge numbers turns (a pause resumed takes a new number): any newer reply.
            stopped = await client.wait_for_event(
                "agent_stopped_speaking", within=90, where=lambda e, t=replied: e["turn_id"] > t
            )
            replied = stopped["turn_id"]
            await client.wait_for_event("latency", within=5, where=lambda e, t=replied: e["turn_id"] == t)
    finally:
        await client.close()
    # A second call: the WebRTC connect histogram grows too.
    second = EdgeClient(edge_url)
    try:
        await second.connect()
    finally:
        await second.close()


async def cancel_replies(nats_url: str, count: int) -> None:
    """What a barge-in does to the llm: a reply generating, then Cancel for its turn."""
    bus = await Bus.connect(nats_url, "deploy-test")
    session = "deploytest"
    stream: asyncio.Queue[Any] = asyncio.Queue()

    async def on_stream(message: Any, _subject: str) -> None:
        await stream.put(message)

    subscription = await bus.subscribe(LLM_STREAM, on_stream, session_id=session)
    try:
        for turn in range(1, count + 1):
            prompt = ChatMessage("user", "Tell me a long story about the sea, with many details.")
            request = LlmRequest(
                session_id=session, turn_id=turn, seq=bus.next_seq(session), messages=[prompt], max_tokens=100
            )
            await bus.publish(LLM_REQUEST, request)
            while not isinstance(await asyncio.wait_for(stream.get(), 30), LlmToken):
                pass
            await bus.publish(CONTROL, Cancel(session_id=session, turn_id=turn, seq=bus.next_seq(session)))
            while not isinstance(done := await asyncio.wait_for(stream.get(), 30), LlmDone):
                pass
            assert done.cancelled, done
            await asyncio.sleep(1.5)  # a scrape between two observations
        await bus.publish(SESSION, SessionEnded(session_id=session, turn_id=count, seq=bus.next_seq(session)))
    finally:
        await subscription.unsubscribe()
        await bus.close()


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(series["value"][1]) for series in result]


async def test_every_dashboard_query_returns_data(agent_stack: StackProcess, prometheus: Prometheus) -> None:
    async def all_targets_up() -> bool:
        return values(await prometheus.query('up{job="voice-agent"}')) == [1.0] * 5

    await wait_until(all_targets_up, 60, "Prometheus does not see the five services up")
    use_host_addresses(["127.0.0.1"])
    await converse(agent_stack.edge_url)
    await cancel_replies(agent_stack.nats_url, count=2)
    await asyncio.sleep(3)  # the last scrapes

    empty, no_number = [], []
    for dashboard, panel, expr in queries(rate_interval=WINDOW):
        result = await prometheus.query(expr)
        print(f"{panel}: {[round(v, 4) for v in values(result)]}")
        if not result:
            empty.append(f"{dashboard} / {panel}: {expr}")
        elif not any(math.isfinite(v) for v in values(result)):
            no_number.append(f"{dashboard} / {panel}: {expr} -> {values(result)}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert not no_number, "queries without a number:\n" + "\n".join(no_number)

    # And the figures are plausible: the voice-to-voice p50 of this machine is seconds, not hours.
    (p50,) = values(
        await prometheus.query(
            "histogram_quantile(0.5, sum by (le) "
            f"(rate(voice_agent_voice_to_voice_seconds_bucket[{WINDOW}])))"
        )
    )
    assert 0 < p50 < 10, p50
