"""The bench's measure of this machine's floor for a bus hop, and how a run reports it."""

from __future__ import annotations

import pytest

from bench import bus_floor, report
from tests.support import NatsServer


def test_the_floor_of_a_turn_is_its_hops_times_the_median_hop() -> None:
    floor = bus_floor.floor_record([1.0, 3.0, 2.0, 4.0], hops=5, gap_s=0.02)
    assert floor["hop_p50_ms"] == 2.5
    assert floor["hop_p90_ms"] == pytest.approx(3.7)
    assert floor["floor_ms"] == 12.5
    assert (floor["messages"], floor["hops"], floor["gap_ms"]) == (4, 5, 20.0)


def test_bare_hops_through_a_real_nats_server_are_timed_one_by_one(nats_server: NatsServer) -> None:
    hops = bus_floor.measure(nats_server.url, count=20, gap_s=0.005)
    assert len(hops) == 20
    # One clock on one machine: a hop is never negative, and on loopback far under a second.
    assert all(0 < hop < 1000 for hop in hops)


def test_a_run_prints_the_floor_beside_the_bus_target() -> None:
    floor = bus_floor.floor_record([0.9, 1.1, 1.0], hops=5, gap_s=0.02)
    [line] = report.bus_floor_lines(floor)
    assert "floor for 5 hops: 5.00 ms" in line and "p50 1.00 ms" in line
    assert report.bus_floor_lines(None) == []  # runs from before it was measured
    [failed] = report.bus_floor_lines({"error": "RuntimeError: nats-server did not start"})
    assert "not measured" in failed and "did not start" in failed
