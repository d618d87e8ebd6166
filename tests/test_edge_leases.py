"""The edge's leases on its sessions' owners, on virtual time: assignment, renewal,
replacement of a gone, slow or draining owner, and the replica table that spreads
new sessions over the least loaded replicas."""

from __future__ import annotations

from typing import TypeVar

from proto.messages import ChatMessage, Handover, ReplicaStatus
from services.edge.leases import Action, Assign, Leases, Renew, Renewal, Revoke
from services.edge.replicas import ReplicaTable

T = TypeVar("T", Assign, Renew)
HISTORY = Handover(history=[ChatMessage("user", "hi"), ChatMessage("assistant", "Hello!")])


def status(replica: str, sessions: int = 0, draining: bool = False, service: str = "turns") -> ReplicaStatus:
    return ReplicaStatus(service=service, replica=replica, sessions=sessions, draining=draining)


def only(actions: list[Action], kind: type[T]) -> T:
    (action,) = actions
    assert isinstance(action, kind), action
    return action


def leases_with(*replicas: str, now: float = 0.0) -> tuple[Leases, ReplicaTable]:
    table = ReplicaTable(stale_s=3.0)
    for replica in replicas:
        table.seen(status(replica), now)
    return Leases(["turns"], table, renew_every_s=1.0, retry_s=0.5, max_misses=2), table


def test_new_sessions_alternate_over_the_least_loaded_live_replicas() -> None:
    table = ReplicaTable(stale_s=3.0)
    table.seen(status("a", sessions=1), now=0.0)
    table.seen(status("b", sessions=0), now=0.0)
    table.seen(status("c", sessions=0, draining=True), now=0.0)
    table.seen(status("x", sessions=0, service="stt"), now=0.0)
    assert [table.pick("turns", now=1.0) for _ in range(4)] == ["b", "a", "b", "a"]
    table.seen(status("a", sessions=9), now=2.0)  # its heartbeat replaces what this edge counted
    assert table.pick("turns", now=2.5) == "b"
    assert table.pick("turns", now=4.5) == "a"  # b is silent for 3 s: not picked
    table.forget("turns", "a")
    assert table.pick("turns", now=4.5) is None  # nobody known: the queue group decides


def test_a_session_is_assigned_then_renewed_every_second() -> None:
    leases, _ = leases_with("a")
    assign = only(leases.open("s1", now=0.0), Assign)
    assert assign == Assign("turns", "s1", "a")
    assert leases.due(now=0.5) == []  # one request at a time
    assert leases.assigned(assign, "a", now=0.01) == []
    assert leases.owner("turns", "s1") == "a"
    assert leases.due(now=0.9) == []
    renew = only(leases.due(now=1.01), Renew)
    assert renew == Renew("turns", "s1", "a")
    leases.renewed(renew, Renewal.HELD, now=1.02)
    assert leases.due(now=1.5) == [] and leases.owner("turns", "s1") == "a"


def test_without_an_answer_the_queue_group_is_asked_again_after_a_pause() -> None:
    leases, _ = leases_with()
    assign = only(leases.open("s1", now=0.0), Assign)
    assert assign.target is None  # no heartbeat yet: the queue group
    leases.assigned(assign, None, now=0.0)  # no responders: no replica running
    assert leases.due(now=0.4) == []
    assert leases.due(now=0.5) == [Assign("turns", "s1", None)]


def test_a_picked_replica_that_refuses_is_skipped_at_once() -> None:
    leases, _ = leases_with("a", "b")
    assign = only(leases.open("s1", now=0.0), Assign)
    leases.assigned(assign, None, now=0.0)  # "a" is draining (its heartbeat not seen yet)
    again = only(leases.due(now=0.0), Assign)
    assert again.target == "b"


def test_a_gone_owner_is_replaced_at_once_and_never_picked_again() -> None:
    leases, _ = leases_with("a", "b")
    assign = only(leases.open("s1", now=0.0), Assign)
    leases.assigned(assign, "a", now=0.0)
    renew = only(leases.due(now=1.0), Renew)
    assert leases.renewed(renew, Renewal.GONE, now=1.0) == []  # nobody to revoke: it is dead
    reassign = only(leases.due(now=1.0), Assign)
    assert reassign == Assign("turns", "s1", "b", None)  # empty history: the crash lost it


def test_a_draining_owner_hands_the_history_to_the_next_one() -> None:
    leases, _ = leases_with("a", "b")
    assign = only(leases.open("s1", now=0.0), Assign)
    leases.assigned(assign, "a", now=0.0)
    renew = only(leases.due(now=1.0), Renew)
    leases.renewed(renew, Renewal.RELEASED, now=1.0, handover=HISTORY)
    reassign = only(leases.due(now=1.0), Assign)
    assert reassign.handover == HISTORY
    leases.assigned(reassign, None, now=1.0)  # refused: the handover waits for the next one
    retry = only(leases.due(now=1.0), Assign)
    assert isinstance(retry, Assign) and retry.handover == HISTORY
    leases.assigned(retry, "b", now=1.1)
    assert leases.owner("turns", "s1") == "b"
    renew = only(leases.due(now=2.1), Renew)
    assert renew == Renew("turns", "s1", "b")


def test_one_slow_renewal_is_retried_two_and_the_owner_is_revoked_and_replaced() -> None:
    leases, _ = leases_with("a", "b")
    assign = only(leases.open("s1", now=0.0), Assign)
    leases.assigned(assign, "a", now=0.0)
    renew = only(leases.due(now=1.0), Renew)
    assert leases.renewed(renew, Renewal.TIMEOUT, now=2.0) == []
    renew = only(leases.due(now=2.0), Renew)
    assert renew.owner == "a"  # still the owner after one miss
    assert leases.renewed(renew, Renewal.TIMEOUT, now=3.0) == [Revoke("turns", "s1", "a")]
    reassign = only(leases.due(now=3.0), Assign)
    assert isinstance(reassign, Assign) and reassign.target == "b"


def test_closing_revokes_the_owners_and_a_late_assignment_is_undone() -> None:
    leases, _ = leases_with("a")
    assign = only(leases.open("s1", now=0.0), Assign)
    leases.assigned(assign, "a", now=0.0)
    assert leases.close("s1") == [Revoke("turns", "s1", "a")]
    assert len(leases) == 0 and leases.due(now=5.0) == []
    late = only(leases.open("s2", now=5.0), Assign)
    assert leases.close("s2") == []  # not assigned yet
    assert leases.assigned(late, "a", now=5.1) == [Revoke("turns", "s2", "a")]


def test_every_assigned_service_gets_its_own_owner() -> None:
    table = ReplicaTable()
    table.seen(status("t1"), now=0.0)
    table.seen(status("s1", service="stt"), now=0.0)
    leases = Leases(["stt", "turns"], table)
    actions = leases.open("s", now=0.0)
    assert {(a.service, a.target) for a in actions if isinstance(a, Assign)} == {
        ("stt", "s1"),
        ("turns", "t1"),
    }
