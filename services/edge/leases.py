"""Each session's owner among the replicas of every assigned service (stt, turns),
as the edge keeps it: plain logic on a caller-supplied clock, no NATS.

The edge owns a session's lifetime, so it also keeps its owners: at session start
it asks for one per service (``Assign``), then renews the lease about every second
(``Renew``). An owner that is gone (no responders), does not know the session, gave
it back while draining (with a handover), or missed ``max_misses`` renewals in a
row is replaced at once by a new ``Assign``; a replica that timed out is told to
forget the session (``Revoke``) in case it is only slow. The adapter
(lease_keeper.py) sends the actions and feeds the answers back.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from proto.messages import Handover
from services.edge.replicas import ReplicaTable

RENEW_EVERY_S = 1.0
RETRY_S = 0.5  # no replica answered an assignment: ask again this much later
MAX_MISSES = 2


@dataclass(frozen=True)
class Assign:
    service: str
    session_id: str
    target: str | None  # a replica picked from the table; None: whichever the queue group picks
    handover: Handover | None = None


@dataclass(frozen=True)
class Renew:
    service: str
    session_id: str
    owner: str


@dataclass(frozen=True)
class Revoke:
    service: str
    session_id: str
    owner: str


Action = Assign | Renew | Revoke


class Renewal(enum.Enum):
    HELD = "held"
    RELEASED = "released"  # the owner is draining and gave the session back
    UNKNOWN = "unknown"  # the owner does not know the session (restarted, lease expired)
    GONE = "gone"  # nobody listens on the owner's subject: it died or stopped
    TIMEOUT = "timeout"


@dataclass
class _Lease:
    owner: str | None = None
    due: float = 0.0
    pending: Action | None = None  # a request on its way: nothing else is sent meanwhile
    misses: int = 0
    handover: Handover | None = None  # given back by a draining owner, for the next one


class Leases:
    def __init__(
        self,
        services: Sequence[str],
        table: ReplicaTable,
        *,
        renew_every_s: float = RENEW_EVERY_S,
        retry_s: float = RETRY_S,
        max_misses: int = MAX_MISSES,
    ) -> None:
        self._services = tuple(services)
        self._table = table
        self._renew_every_s = renew_every_s
        self._retry_s = retry_s
        self._max_misses = max_misses
        self._sessions: dict[str, dict[str, _Lease]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def owner(self, service: str, session_id: str) -> str | None:
        lease = self._sessions.get(session_id, {}).get(service)
        return lease.owner if lease is not None else None

    def open(self, session_id: str, now: float) -> list[Action]:
        """A new session: the assignments to send now."""
        leases = self._sessions.setdefault(session_id, {})
        for service in self._services:
            leases.setdefault(service, _Lease(due=now))
        return self._take(session_id, leases, now)

    def close(self, session_id: str) -> list[Action]:
        """The session is over: tell its owners to forget it."""
        leases = self._sessions.pop(session_id, {})
        return [Revoke(svc, session_id, lease.owner) for svc, lease in leases.items() if lease.owner]

    def due(self, now: float) -> list[Action]:
        """Every request whose time has come (and none already on its way)."""
        return [a for sid, leases in self._sessions.items() for a in self._take(sid, leases, now)]

    def assigned(self, action: Assign, replica: str | None, now: float) -> list[Action]:
        """The answer to ``action``: the new owner, or None (no answer, or refused)."""
        lease = self._settle(action)
        if lease is None:  # the session ended meanwhile
            return [Revoke(action.service, action.session_id, replica)] if replica else []
        if replica is not None:
            lease.owner, lease.handover, lease.misses = replica, None, 0
            lease.due = now + self._renew_every_s
        elif action.target is not None:
            self._table.forget(action.service, action.target)
            lease.due = now  # another replica, or the queue group, at once
        else:
            lease.due = now + self._retry_s
        return []

    def renewed(
        self, action: Renew, outcome: Renewal, now: float, handover: Handover | None = None
    ) -> list[Action]:
        """The answer to ``action``; a replica that timed out is told to forget the session."""
        lease = self._settle(action)
        if lease is None or lease.owner != action.owner:
            return []
        if outcome is Renewal.HELD:
            lease.misses = 0
            lease.due = now + self._renew_every_s
            return []
        lease.due = now
        if outcome is Renewal.TIMEOUT:
            lease.misses += 1
            if lease.misses < self._max_misses:
                return []  # one slow answer: renew again at once
        # A new owner, at once; the handover (turns: the history) goes to it.
        lease.owner, lease.misses = None, 0
        lease.handover = handover if outcome is Renewal.RELEASED else None
        if outcome in (Renewal.GONE, Renewal.TIMEOUT):
            self._table.forget(action.service, action.owner)
        if outcome is Renewal.TIMEOUT:
            return [Revoke(action.service, action.session_id, action.owner)]
        return []

    def _take(self, session_id: str, leases: dict[str, _Lease], now: float) -> list[Action]:
        actions: list[Action] = []
        for service, lease in leases.items():
            if lease.pending is None and now >= lease.due:
                lease.pending = self._next(service, session_id, lease, now)
                actions.append(lease.pending)
        return actions

    def _next(self, service: str, session_id: str, lease: _Lease, now: float) -> Action:
        if lease.owner is None:
            return Assign(service, session_id, self._table.pick(service, now), lease.handover)
        return Renew(service, session_id, lease.owner)

    def _settle(self, action: Assign | Renew) -> _Lease | None:
        lease = self._sessions.get(action.session_id, {}).get(action.service)
        if lease is None or lease.pending is not action:
            return None
        lease.pending = None
        return lease
