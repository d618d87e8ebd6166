"""The replicas of the assigned services as this edge last heard of them: plain
logic on a caller-supplied clock, fed by their ``ReplicaStatus`` heartbeats.

A new session goes to the least loaded replica that is live and not draining.
A NATS queue group would pick one at random, which for a handful of long-lived
sessions leaves replicas idle while another holds them all; with the table the
sessions of one edge alternate over the replicas even before the next heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass

from proto.messages import ReplicaStatus

STALE_S = 3.0  # heartbeats come every 0.5 s: three seconds of silence and a replica is not picked


@dataclass
class _Replica:
    sessions: int
    draining: bool
    seen_at: float
    picked: int = 0  # sessions this edge gave it since its last heartbeat


class ReplicaTable:
    def __init__(self, stale_s: float = STALE_S) -> None:
        self._stale_s = stale_s
        self._replicas: dict[tuple[str, str], _Replica] = {}

    def seen(self, status: ReplicaStatus, now: float) -> None:
        self._replicas[(status.service, status.replica)] = _Replica(status.sessions, status.draining, now)

    def pick(self, service: str, now: float) -> str | None:
        """The replica to give a new session to, or None (ask the queue group)."""
        live = [
            (r.sessions + r.picked, replica_id)
            for (svc, replica_id), r in self._replicas.items()
            if svc == service and not r.draining and now - r.seen_at <= self._stale_s
        ]
        if not live:
            return None
        _, chosen = min(live)
        self._replicas[(service, chosen)].picked += 1
        return chosen

    def forget(self, service: str, replica_id: str) -> None:
        """It did not answer or refused: not picked again until its next heartbeat."""
        self._replicas.pop((service, replica_id), None)
