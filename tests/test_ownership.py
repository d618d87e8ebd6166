"""Session ownership on a replica, on virtual time: claims, leases, draining."""

from __future__ import annotations

from services.common.ownership import LeaseStatus, Ownership


def test_a_claimed_session_is_held_while_renewed_and_over_when_not() -> None:
    owned = Ownership(lease_s=5.0)
    assert owned.claim("s1", now=0.0) and "s1" in owned
    assert owned.renew("s1", now=4.0, idle=True) is LeaseStatus.HELD
    assert owned.expire(now=8.9) == []  # renewed at 4: good until 9
    assert owned.expire(now=9.0) == ["s1"]
    assert "s1" not in owned and len(owned) == 0
    assert owned.renew("s1", now=9.5, idle=True) is LeaseStatus.UNKNOWN  # the edge asks for another owner


def test_a_claim_again_only_refreshes_and_a_drop_forgets() -> None:
    owned = Ownership(lease_s=5.0)
    owned.claim("s1", now=0.0)
    owned.claim("s1", now=3.0)  # the edge retried after a slow answer
    assert len(owned) == 1 and owned.expire(now=7.0) == []
    assert owned.drop("s1") and not owned.drop("s1")
    assert owned.renew("s1", now=7.5, idle=True) is LeaseStatus.UNKNOWN


def test_draining_takes_nothing_new_and_gives_back_idle_sessions_at_their_renewal() -> None:
    owned = Ownership(lease_s=5.0)
    owned.claim("busy", now=0.0)
    owned.claim("idle", now=0.0)
    owned.drain(release_by=20.0)
    assert owned.draining
    assert not owned.claim("new", now=1.0)
    assert owned.renew("idle", now=1.0, idle=True) is LeaseStatus.RELEASED
    assert owned.renew("busy", now=1.0, idle=False) is LeaseStatus.HELD  # mid-reply: it stays a while
    assert owned.renew("busy", now=2.0, idle=True) is LeaseStatus.RELEASED  # between turns now
    assert len(owned) == 0


def test_draining_gives_back_even_busy_sessions_once_release_by_has_passed() -> None:
    owned = Ownership(lease_s=5.0)
    owned.claim("busy", now=0.0)
    owned.drain(release_by=10.0)
    assert owned.renew("busy", now=9.0, idle=False) is LeaseStatus.HELD
    assert owned.renew("busy", now=10.0, idle=False) is LeaseStatus.RELEASED
