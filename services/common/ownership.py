"""Which sessions this replica owns: plain logic on a caller-supplied clock, no NATS.

The edge owns a session's lifetime and picks its owner; the owner holds a lease
the edge renews about every second. A lease not renewed for ``lease_s`` is over
(the edge died, or gave the session to another replica without reaching us).
Draining (SIGTERM), the replica takes no new session and gives each one back at
its next renewal once the session is idle, or regardless once ``release_by`` has
passed, so every session has left before the grace ends.
"""

from __future__ import annotations

import enum
import math


class LeaseStatus(enum.StrEnum):
    HELD = "held"  # still ours
    RELEASED = "released"  # given back (draining): the edge asks for a new owner
    UNKNOWN = "unknown"  # not ours (expired, revoked, ended): the edge asks for a new owner


class Ownership:
    def __init__(self, lease_s: float) -> None:
        self._lease_s = lease_s
        self._expires: dict[str, float] = {}
        self._release_by: float | None = None

    def __len__(self) -> int:
        return len(self._expires)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._expires

    @property
    def draining(self) -> bool:
        return self._release_by is not None

    def claim(self, session_id: str, now: float) -> bool:
        """Take ``session_id`` on (again: the edge may retry); False while draining."""
        if self.draining:
            return False
        self._expires[session_id] = now + self._lease_s
        return True

    def renew(self, session_id: str, now: float, *, idle: bool) -> LeaseStatus:
        """The edge renews the lease; ``idle``: nothing of the session is in progress here."""
        if session_id not in self._expires:
            return LeaseStatus.UNKNOWN
        if self._release_by is not None and (idle or now >= self._release_by):
            del self._expires[session_id]
            return LeaseStatus.RELEASED
        self._expires[session_id] = now + self._lease_s
        return LeaseStatus.HELD

    def drop(self, session_id: str) -> bool:
        """The session ended or was revoked; False if it was not ours."""
        return self._expires.pop(session_id, None) is not None

    def expire(self, now: float) -> list[str]:
        """Sessions whose lease ran out, no longer ours."""
        over = [sid for sid, expires in self._expires.items() if now >= expires]
        for sid in over:
            del self._expires[sid]
        return over

    def drain(self, release_by: float = math.inf) -> None:
        """Take nothing new; give sessions back when idle, all of them from ``release_by`` on."""
        self._release_by = release_by
