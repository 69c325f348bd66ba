"""The lock spec, rule by rule: for every rule a hand-built state where its guard is
false and one where it is true (so altering any guard fails here, including guards
no variant covers), and for every clause of every invariant a state that breaks
just that clause.  (Every reachability property reached at the default size:
tests/spec/test_lock.py::test_correct_spec_holds_at_default_size.)"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from distcheck.spec.codec import to_json
from distcheck.spec.lock import (
    CRASHED,
    HOLDING,
    IDLE,
    LAPSED,
    WAITING,
    AcceptWrite,
    Acquire,
    Client,
    ClientCrash,
    Config,
    Drift,
    Expire,
    Grant,
    LeaderChange,
    Lease,
    Lock,
    LockAction,
    LockState,
    RejectWrite,
    Release,
    Renew,
    Server,
    Storage,
    Tick,
    Write,
)
from distcheck.spec.values import FrozenMap

# 2 clients, ttl 2, max_drift 1 (a client trusts a fresh lease for 1 tick of its own
# clock), max_time 2, max_requests 2,
# max_leader_changes 1.
SPEC = Lock(Config())


def state(
    clients: Mapping[str, Client] | None = None,
    *,
    now: int = 0,
    queue: tuple[tuple[int, str], ...] = (),
    leases: Mapping[int, Lease] | None = None,
    issued: int = 0,
    last_granted: int = 0,
    storage: Storage = Storage(),
    epoch: int = 0,
    grants_after: int = 0,
    old_leases: Mapping[int, Lease] | None = None,
) -> LockState:
    """A state: every client idle, except as given."""
    everyone = {c: Client() for c in SPEC.clients} | dict(clients or {})
    server = Server(queue, FrozenMap(leases or {}), issued, last_granted, epoch, grants_after)
    return LockState(now, FrozenMap(everyone), server, storage, FrozenMap(old_leases or {}))


def holding(token: int, deadline: int, lag: int = 0, in_flight: int | None = None) -> Client:
    return Client(HOLDING, token, deadline, lag, in_flight)


def step(s: LockState, a: LockAction, spec: Lock = SPEC) -> LockState | None:
    """The state after ``a``, or None; and the explorer's enumeration agrees."""
    nxt = spec.next_state(s, a)
    assert (a in spec.actions(s)) == (nxt is not None), a
    if nxt is not None:
        assert (a, nxt) in spec.successors(s)
    return nxt


# A fresh holder: c1 was granted token 1 at time 0.
C1_HOLDS = state({"c1": holding(1, 1)}, leases={1: Lease("c1", 0, 2)}, issued=1, last_granted=1)


# --------------------------------------------------------------------- the server


def test_grant_goes_to_the_oldest_waiter_once_no_lease_is_held() -> None:
    waiting = state({"c1": Client(WAITING, 1), "c2": Client(WAITING, 2)}, queue=((1, "c1"), (2, "c2")), issued=2)
    assert step(waiting, Grant("c1")) == attrs.evolve(
        waiting,
        clients=waiting.clients.set("c1", holding(1, 1)),
        server=Server(((2, "c2"),), FrozenMap({1: Lease("c1", 0, 2)}), 2, 1),
    )
    assert step(waiting, Grant("c2")) is None  # not the oldest
    assert step(state(), Grant("c1")) is None  # nobody waits
    held = attrs.evolve(waiting, server=attrs.evolve(waiting.server, leases=FrozenMap({3: Lease("c2", 0, 1)})))
    assert step(held, Grant("c1")) is None  # a lease is held until its expiry...
    assert step(attrs.evolve(held, now=1), Grant("c1")) is not None  # ...and not at it


def test_grant_waits_for_the_takeover_barrier_and_ignores_leases_it_has_no_record_of() -> None:
    # A new server took over at 0 while c1 held lease 1 (until 2): no grant before 2.
    taken_over = state(
        {"c1": Client(LAPSED, 1), "c2": Client(WAITING, 2)},
        now=1,
        queue=((2, "c2"),),
        issued=2,
        last_granted=1,
        epoch=1,
        grants_after=2,
        old_leases={1: Lease("c1", 0, 2)},
    )
    assert step(taken_over, Grant("c2")) is None  # before the barrier
    after = step(attrs.evolve(taken_over, now=2), Grant("c2"))
    assert after is not None and after.server.leases == FrozenMap({2: Lease("c2", 2, 4)})
    assert after.old_leases == taken_over.old_leases
    # The barrier alone decides: an old lease still in force is not the server's to see.
    unknown = attrs.evolve(taken_over, now=2, old_leases=FrozenMap({1: Lease("c1", 0, 3)}))
    assert step(unknown, Grant("c2")) is not None


def test_leader_change_keeps_durable_records_only_and_sets_the_barrier() -> None:
    before = state(
        {"c1": holding(1, 2, in_flight=1), "c2": Client(WAITING, 2, in_flight=1)},
        now=1,
        queue=((2, "c2"),),
        leases={1: Lease("c1", 1, 3)},
        issued=2,
        last_granted=1,
        old_leases={},
    )
    assert step(before, LeaderChange()) == state(
        {"c1": holding(1, 2, in_flight=1), "c2": Client(IDLE, in_flight=1)},  # a write in flight still arrives
        now=1,
        issued=2,
        last_granted=1,
        epoch=1,
        grants_after=3,
        old_leases={1: Lease("c1", 1, 3)},
    )
    assert step(attrs.evolve(before, server=attrs.evolve(before.server, epoch=1)), LeaderChange()) is None  # bound
    # Leases already over, the server's or older ones, are forgotten for good.
    expired = state({"c1": Client(LAPSED, 1)}, now=2, leases={1: Lease("c1", 0, 2)}, issued=1, last_granted=1)
    after = step(expired, LeaderChange())
    assert after is not None and after.old_leases == FrozenMap() and after.server.leases == FrozenMap()
    twice = Lock(Config(max_leader_changes=2))
    older = attrs.evolve(
        after, now=3, old_leases=FrozenMap({1: Lease("c1", 0, 2)}), server=attrs.evolve(after.server, epoch=1)
    )
    again = step(older, LeaderChange(), twice)
    assert again is not None and again.old_leases == FrozenMap() and again.server.epoch == 2


def test_grant_to_a_crashed_waiter_leaves_it_crashed() -> None:
    crashed = Client(CRASHED, crashed_at=0)
    after = step(state({"c1": crashed}, queue=((1, "c1"),), issued=1), Grant("c1"))
    assert after is not None and after.clients["c1"] == crashed and after.server.leases[1] == Lease("c1", 0, 2)


def test_expire_reaps_a_lease_only_once_it_has_expired() -> None:
    lapsed = state({"c1": Client(LAPSED, 1)}, now=2, leases={1: Lease("c1", 0, 2)}, issued=1)
    assert step(lapsed, Expire(1)) == attrs.evolve(lapsed, server=attrs.evolve(lapsed.server, leases=FrozenMap()))
    assert step(attrs.evolve(lapsed, now=1), Expire(1)) is None  # still live
    assert step(lapsed, Expire(2)) is None  # no such lease


@pytest.mark.parametrize("status", [IDLE, WAITING, HOLDING, LAPSED, CRASHED])
def test_acquire_only_from_an_idle_client_while_requests_remain(status: str) -> None:
    client = {IDLE: Client(), WAITING: Client(WAITING, 1), HOLDING: holding(1, 1), LAPSED: Client(LAPSED, 1)}
    client[CRASHED] = Client(CRASHED, crashed_at=0)
    s = state({"c1": client[status]}, issued=1)
    after = step(s, Acquire("c1"))
    if status == IDLE:
        assert after == state({"c1": Client(WAITING, 2)}, queue=((2, "c1"),), issued=2)
    else:
        assert after is None
    assert step(state(issued=2), Acquire("c2")) is None  # max_requests reached


def test_renew_extends_a_live_lease_of_the_holder() -> None:
    later = attrs.evolve(C1_HOLDS, now=1, clients=C1_HOLDS.clients.set("c1", holding(1, 2, lag=1)))
    after = step(later, Renew("c1"))
    assert after is not None
    assert after.server.leases[1] == Lease("c1", 0, 3) and after.clients["c1"] == holding(1, 2)
    lapsed = attrs.evolve(later, clients=later.clients.set("c1", Client(LAPSED, 1)))  # its own clock gave up
    assert step(lapsed, Renew("c1")) == after  # the server's lease is still live


@pytest.mark.parametrize(
    "leases",
    [
        {1: Lease("c1", 0, 2)},  # expired at now = 2
        {},  # reaped
        {1: Lease("c2", 0, 5)},  # not c1's
    ],
)
def test_renew_is_refused_and_the_client_learns_it_lost_the_lock(leases: dict[int, Lease]) -> None:
    s = state({"c1": Client(LAPSED, 1, in_flight=1)}, now=2, leases=leases, issued=1)
    after = step(s, Renew("c1"))
    assert after == attrs.evolve(s, clients=s.clients.set("c1", Client(IDLE, in_flight=1)))


@pytest.mark.parametrize("record", [Renew, Release])
def test_renew_and_release_only_from_a_holder(record: type[Renew | Release]) -> None:
    for client in (Client(), Client(WAITING, 1), Client(CRASHED, crashed_at=0)):
        assert step(state({"c1": client}, queue=((1, "c1"),), issued=1), record("c1")) is None


def test_release_deletes_only_the_clients_own_lease() -> None:
    both = attrs.evolve(
        C1_HOLDS, server=attrs.evolve(C1_HOLDS.server, leases=FrozenMap({1: Lease("c1", 0, 2), 2: Lease("c2", 0, 0)}))
    )
    after = step(both, Release("c1"))
    assert after is not None and dict(after.server.leases) == {2: Lease("c2", 0, 0)}
    assert after.clients["c1"] == Client()
    lapsed = attrs.evolve(C1_HOLDS, clients=C1_HOLDS.clients.set("c1", Client(LAPSED, 1)))
    assert step(lapsed, Release("c1")) is not None


# ---------------------------------------------------------------- storage, clients


def test_write_only_from_a_trusting_client_with_no_write_in_flight() -> None:
    after = step(C1_HOLDS, Write("c1"))
    assert after is not None and after.clients["c1"] == holding(1, 1, in_flight=1)
    assert step(after, Write("c1")) is None
    lapsed = attrs.evolve(C1_HOLDS, clients=C1_HOLDS.clients.set("c1", Client(LAPSED, 1)))
    assert step(lapsed, Write("c1")) is None
    assert step(state({"c1": Client(WAITING, 1)}, issued=1), Write("c1")) is None


@pytest.mark.parametrize("token,highest,accepted", [(2, 1, True), (2, 2, True), (1, 2, False)])
def test_storage_accepts_a_token_no_lower_than_the_highest_and_rejects_the_rest(
    token: int, highest: int, accepted: bool
) -> None:
    s = state({"c1": Client(in_flight=token)}, issued=2, storage=Storage(highest, highest))
    accept, reject = step(s, AcceptWrite("c1")), step(s, RejectWrite("c1"))
    assert (accept is not None, reject is not None) == (accepted, not accepted)
    if accept is not None:
        assert accept.storage == Storage(token, token) and accept.clients["c1"] == Client()
    if reject is not None:
        assert reject.storage == Storage(highest, highest, rejected=True) and reject.clients["c1"] == Client()


def test_storage_decides_only_a_write_in_flight() -> None:
    assert step(C1_HOLDS, AcceptWrite("c1")) is None and step(C1_HOLDS, RejectWrite("c1")) is None


def test_drift_only_for_a_trusting_client_and_at_most_max_drift() -> None:
    after = step(C1_HOLDS, Drift("c1"))
    assert after is not None and after.clients["c1"].lag == 1
    assert step(after, Drift("c1")) is None  # max_drift is 1
    lapsed = attrs.evolve(C1_HOLDS, clients=C1_HOLDS.clients.set("c1", Client(LAPSED, 1)))
    assert step(lapsed, Drift("c1")) is None


@pytest.mark.parametrize(
    "client,crashes",
    [
        (Client(), False),
        (Client(WAITING, 1), True),
        (holding(1, 1, in_flight=1), True),
        (Client(LAPSED, 1), True),
        (Client(CRASHED, crashed_at=0), False),
    ],
)
def test_crash_only_of_a_client_the_service_knows(client: Client, crashes: bool) -> None:
    s = state({"c1": client}, now=1, issued=1)
    after = step(s, ClientCrash("c1"))
    if crashes:
        assert after is not None and after.clients["c1"] == Client(CRASHED, in_flight=client.in_flight, crashed_at=1)
    else:
        assert after is None


def test_tick_stops_at_max_time_and_lapses_a_holder_whose_own_clock_reached_its_deadline() -> None:
    assert step(state(now=2), Tick()) is None  # max_time
    after = step(C1_HOLDS, Tick())  # deadline 1 reached at now 1
    assert after is not None and after.now == 1 and after.clients["c1"] == Client(LAPSED, 1)
    later = attrs.evolve(C1_HOLDS, clients=C1_HOLDS.clients.set("c1", holding(1, 2)))
    after = step(later, Tick())
    assert after is not None and after.clients["c1"] == holding(1, 2)  # a tick before its deadline
    slow = attrs.evolve(C1_HOLDS, clients=C1_HOLDS.clients.set("c1", holding(1, 1, lag=1)))
    after = step(slow, Tick())
    assert after is not None and after.clients["c1"] == holding(1, 1, lag=1)  # its own clock is a tick behind


# -------------------------------------------------------------------- invariants


def broken(s: LockState) -> list[str]:
    return [inv.name for inv in SPEC.invariants() if not inv.holds(s)]


def with_c1(s: LockState, **changes: Any) -> LockState:
    return attrs.evolve(s, clients=s.clients.set("c1", attrs.evolve(s.clients["c1"], **changes)))


TWO_ISSUED = state(issued=2)


@pytest.mark.parametrize(
    "bad",
    [
        attrs.evolve(TWO_ISSUED, now=-1),
        attrs.evolve(TWO_ISSUED, clients=TWO_ISSUED.clients.set("c3", Client())),  # a client not in the config
        with_c1(TWO_ISSUED, status="sleeping"),
        state({"c1": Client(WAITING, 3)}, issued=2),  # a token never issued
        state({"c1": Client(in_flight=3)}, issued=2),  # a write carrying a token never issued
        with_c1(C1_HOLDS, lag=2),  # more drift than max_drift
        with_c1(C1_HOLDS, lag=-1, deadline=2),
        with_c1(C1_HOLDS, status=LAPSED),  # a deadline without a lease it trusts
        with_c1(C1_HOLDS, deadline=None),  # a holder without a deadline
        attrs.evolve(C1_HOLDS, now=1),  # trusting at its own deadline
        with_c1(TWO_ISSUED, token=1),  # an idle client with a token
        with_c1(state({"c1": Client(WAITING, 1)}, issued=1), token=None),  # a waiter without one
        with_c1(TWO_ISSUED, crashed_at=0),  # a crash time without a crash
        with_c1(TWO_ISSUED, status=CRASHED),  # a crash without a crash time
        state({"c1": Client(WAITING, 1), "c2": Client(WAITING, 2)}, queue=((2, "c2"), (1, "c1")), issued=2),
        state({"c1": Client(WAITING, 1)}, queue=((1, "c1"), (1, "c1")), issued=1),  # queued twice
        state(queue=((3, "c1"),), issued=2),  # queued with a token never issued
        state(queue=((1, "c9"),), issued=1),  # an unknown client queued
        state(leases={3: Lease("c1", 0, 0)}, issued=2),  # a lease with a token never issued
        state(leases={1: Lease("c9", 0, 0)}, issued=1),  # an unknown client's lease
        state(issued=1, last_granted=2),  # granted a token never issued
        state(issued=1, last_granted=-1),
        state(issued=1, storage=Storage(-1, -1)),  # data from before the first token
        state(issued=1, storage=Storage(2, 2)),  # accepted a token never issued
        state(epoch=2),  # more leader changes than max_leader_changes
        state(epoch=-1),
        state(now=1, grants_after=4),  # a barrier beyond one ttl from now
        state(grants_after=-1),
        state(issued=1, old_leases={2: Lease("c1", 0, 2)}),  # an old lease with a token never issued
        state(issued=1, old_leases={1: Lease("c9", 0, 0)}),  # an unknown client's old lease
        state(issued=1, leases={1: Lease("c1", 0, 0)}, old_leases={1: Lease("c1", 0, 0)}),  # a token in both
    ],
)
def test_each_clause_of_type_ok_is_checked(bad: LockState) -> None:
    assert broken(bad) == ["TypeOK"]


def test_stored_data_above_the_highest_token_is_ill_typed_and_unfenced() -> None:
    # data <= highest cannot break alone: FencedWrites (data == highest) is stronger.
    assert broken(state(issued=2, storage=Storage(1, 2))) == ["TypeOK", "FencedWrites"]


def test_the_well_typed_states_above_break_nothing() -> None:
    for s in (TWO_ISSUED, C1_HOLDS, state({"c1": Client(WAITING, 1)}, queue=((1, "c1"),), issued=1)):
        assert broken(s) == []


def test_mutual_exclusion_catches_two_live_leases() -> None:
    two = state(leases={1: Lease("c1", 0, 2), 2: Lease("c2", 0, 2)}, issued=2)
    assert broken(two) == ["MutualExclusion"]
    assert broken(attrs.evolve(two, now=2)) == []  # both expired
    # ... whichever server granted them: an earlier server's lease still counts.
    old_and_new = state(leases={2: Lease("c2", 0, 2)}, old_leases={1: Lease("c1", 0, 2)}, issued=2, epoch=1)
    assert broken(old_and_new) == ["MutualExclusion"]
    assert broken(attrs.evolve(old_and_new, now=2)) == []


@pytest.mark.parametrize(
    "leases,now",
    [
        ({}, 0),  # the client trusts a lease the server does not have
        ({1: Lease("c2", 0, 2)}, 0),  # ... or has for another client
        ({1: Lease("c1", 0, 1)}, 1),  # ... or has let expire
    ],
)
def test_lease_validity_catches_a_client_trusting_a_lease_the_server_does_not_count(
    leases: dict[int, Lease], now: int
) -> None:
    s = state({"c1": holding(1, 2)}, now=now, leases=leases, issued=1, last_granted=1)
    assert broken(s) == ["LeaseValidity"]


def test_lease_validity_counts_an_earlier_servers_lease() -> None:
    s = state({"c1": holding(1, 4)}, old_leases={1: Lease("c1", 0, 3)}, issued=1, last_granted=1, epoch=1)
    assert broken(s) == []
    assert broken(attrs.evolve(s, now=3)) == ["LeaseValidity"]  # ... while it is unexpired
    other = attrs.evolve(s, old_leases=FrozenMap({1: Lease("c2", 0, 3)}))
    assert broken(other) == ["LeaseValidity"]  # ... and is the client's own


def test_automatic_release_counts_an_earlier_servers_lease() -> None:
    crashed = state({"c1": Client(CRASHED, crashed_at=0)}, now=2, old_leases={1: Lease("c1", 0, 3)}, issued=1, epoch=1)
    assert broken(crashed) == ["AutomaticRelease"]


def test_waited_out_old_lease_on_hand_built_states() -> None:
    waited = next(p.holds for p in SPEC.reachable() if p.name == "WaitedOutOldLease")
    after = state(
        {"c1": Client(LAPSED, 1), "c2": holding(2, 3)},
        now=2,
        leases={2: Lease("c2", 2, 4)},
        issued=2,
        last_granted=2,
        epoch=1,
        grants_after=2,
        old_leases={1: Lease("c1", 0, 2)},
    )
    assert waited(after)
    assert not waited(attrs.evolve(after, old_leases=FrozenMap({1: Lease("c2", 0, 2)})))  # the same client
    assert not waited(attrs.evolve(after, old_leases=FrozenMap()))  # no predecessor's lease


def test_fenced_writes_catches_stale_data_over_a_newer_write() -> None:
    assert broken(state(issued=2, storage=Storage(2, 1))) == ["FencedWrites"]


def test_automatic_release_catches_a_crashed_clients_lease_live_ttl_after_the_crash() -> None:
    crashed = state({"c1": Client(CRASHED, crashed_at=0)}, now=2, leases={1: Lease("c1", 0, 3)}, issued=1)
    assert broken(crashed) == ["AutomaticRelease"]
    assert broken(attrs.evolve(crashed, now=1)) == []  # not yet ttl ticks
    granted_later = state({"c1": Client(CRASHED, crashed_at=0)}, now=2, leases={1: Lease("c1", 1, 3)}, issued=1)
    assert broken(granted_later) == []  # ttl counts from the grant, which came after the crash


def test_first_come_first_served_catches_a_waiter_older_than_the_last_grant() -> None:
    overtaken = state({"c1": Client(WAITING, 1)}, queue=((1, "c1"),), issued=2, last_granted=2)
    assert broken(overtaken) == ["FirstComeFirstServed"]
    granted_yet_waiting = state({"c2": Client(WAITING, 2)}, queue=((2, "c2"),), issued=2, last_granted=2)
    assert broken(granted_yet_waiting) == ["FirstComeFirstServed"]
    assert (
        broken(attrs.evolve(granted_yet_waiting, server=attrs.evolve(granted_yet_waiting.server, last_granted=1))) == []
    )


def test_a_crash_reads_as_crash_and_round_trips_through_json() -> None:
    crash = ClientCrash("c2")
    assert str(crash) == "Crash(c2)" and crash.actor == "c2"
    assert SPEC.action_from_json(json.loads(json.dumps(to_json(crash)))) == crash


def test_expired_and_regranted_and_crashed_holder_replaced_on_hand_built_states() -> None:
    props = {p.name: p.holds for p in SPEC.reachable()}
    expired, live = Lease("c1", 0, 2), Lease("c2", 3, 5)  # at time 3, c1's lease is over
    c2_holds = holding(2, 4)

    def at3(c1: Client, leases: dict[int, Lease]) -> LockState:
        return state({"c1": c1, "c2": c2_holds}, now=3, leases=leases, issued=2, last_granted=2)

    crashed = at3(Client(CRASHED, 1), {1: expired, 2: live})
    lapsed = at3(Client(LAPSED, 1), {1: expired, 2: live})
    only_live = at3(Client(LAPSED, 1), {2: live})
    assert props["ExpiredAndRegranted"](crashed) and props["ExpiredAndRegranted"](lapsed)
    assert props["CrashedHolderReplaced"](crashed)
    assert not props["CrashedHolderReplaced"](lapsed)  # c1 did not crash: its lease merely ran out
    assert not props["ExpiredAndRegranted"](only_live) and not props["CrashedHolderReplaced"](only_live)
