"""The lock service spec: the correct spec holds, each variant is caught, the known
counterexamples are pinned as action lists, symmetry is exact, parameters are
validated."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs
import pytest

from distcheck.checks.cli import main
from distcheck.checks.search.explore import explore
from distcheck.spec.contract import Invariant, Reachable
from distcheck.spec.lock import (
    HOLDING,
    LAPSED,
    AcceptWrite,
    Acquire,
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
    NoDriftMargin,
    RejectWrite,
    Release,
    Renew,
    Tick,
    Write,
)
from distcheck.spec.values import FrozenMap, canonical_text


def replay(spec: Lock, actions: Sequence[LockAction]) -> LockState:
    """The state after ``actions`` from the initial state; each must be enabled."""
    state = next(iter(spec.init_states()))
    for a in actions:
        assert a in list(spec.actions(state)), f"{a} is not offered in {state}"
        nxt = spec.next_state(state, a)
        assert nxt is not None, f"{a} is not enabled in {state}"
        state = nxt
    return state


def broken(spec: Lock, state: LockState) -> list[str]:
    return [inv.name for inv in spec.invariants() if not inv.holds(state)]


def trusting(spec: Lock, state: LockState) -> list[str]:
    """The clients that believe, by their own clocks, that they hold the lock."""
    return [c for c in spec.clients if spec.trusts_lease(state, c)]


def lock(variant: str | None = None, **params: int) -> Lock:
    return Lock(Config(variant=variant, **params))


# ------------------------------------------------------------------- correct spec


def test_correct_spec_holds_at_default_size() -> None:
    spec = lock()
    result = explore(spec)
    assert result.ok, result.violation
    assert set(result.reached) == {p.name for p in spec.reachable()}
    # The size of the default instance, so that a change to the model shows up here.
    assert "WaitedOutOldLease" in result.reached  # a leader change really happens, and is waited out
    assert (result.stats.distinct_states, result.stats.depth) == (12769, 17)


def test_without_leader_changes_the_model_is_the_single_server_one() -> None:
    result = explore(lock(max_leader_changes=0, max_time=3))
    assert result.ok and (result.stats.distinct_states, result.stats.depth) == (13640, 18)


def test_correct_spec_holds_over_two_leader_changes() -> None:
    spec = lock(max_leader_changes=2)
    result = explore(spec, symmetry=True)
    assert result.ok, result.violation
    assert set(result.reached) == {p.name for p in spec.reachable()}


def test_symmetry_halves_the_default_instance_and_keeps_it_correct() -> None:
    result = explore(lock(), symmetry=True)
    assert result.ok and result.stats.distinct_states == 6436


# ----------------------------------------------------------------------- variants

EXPECTED = {
    "unfenced_storage": ("FencedWrites", 9),
    "no_drift_margin": ("LeaseValidity", 5),
    "release_by_non_holder": ("LeaseValidity", 7),
    "renew_after_expiry": ("MutualExclusion", 7),
    "no_expiry": ("AutomaticRelease", 5),
    "barging": ("FirstComeFirstServed", 3),
    "no_lease_wait": ("MutualExclusion", 5),
    "no_takeover_drift_margin": ("MutualExclusion", 6),
}


def test_every_variant_has_an_expected_counterexample() -> None:
    assert set(EXPECTED) == set(Lock.variants())


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_variant_is_caught_with_a_short_counterexample(variant: str) -> None:
    result = explore(lock(variant))
    assert result.violation is not None and result.violation.kind == "invariant"
    assert (result.violation.name, len(result.violation.trace) - 1) == EXPECTED[variant]


# Kleppmann's scenario: c1 checks its lease and writes, but the write is held up
# (a GC pause, a slow network) until c1's lease has expired and c2 has written.
PAUSED_CLIENT: list[LockAction] = [
    Acquire("c1"),
    Grant("c1"),
    Write("c1"),
    Tick(),
    Tick(),
    Acquire("c2"),
    Grant("c2"),
    Write("c2"),
    AcceptWrite("c2"),
]


def test_paused_client_corrupts_unfenced_storage() -> None:
    spec = lock("unfenced_storage")
    state = replay(spec, [*PAUSED_CLIENT, AcceptWrite("c1")])
    assert broken(spec, state) == ["FencedWrites"]
    assert state.storage.data == 1 and state.storage.highest == 2  # c1's stale data overwrote c2's


def test_paused_client_is_fenced_off_by_checking_storage() -> None:
    spec = lock()
    state = replay(spec, PAUSED_CLIENT)
    assert spec.next_state(state, AcceptWrite("c1")) is None
    state = replay(spec, [*PAUSED_CLIENT, RejectWrite("c1")])
    assert state.storage.rejected and state.storage.data == 2
    assert broken(spec, state) == []


def test_slow_clock_without_margin_makes_two_holders() -> None:
    # c1's clock loses a tick, so after two server ticks it still trusts its lease,
    # which the server has let expire and then granted to c2.
    plan: list[LockAction] = [Acquire("c1"), Acquire("c2"), Grant("c1"), Drift("c1"), Tick(), Tick()]
    spec = lock("no_drift_margin")
    state = replay(spec, plan)
    assert broken(spec, state) == ["LeaseValidity"]
    state = replay(spec, [*plan, Grant("c2")])
    assert trusting(spec, state) == ["c1", "c2"]
    # With the margin, c1 stops trusting its lease a tick early by its own clock.
    correct = lock()
    state = replay(correct, [*plan, Grant("c2")])
    assert state.clients["c1"].status == LAPSED and trusting(correct, state) == ["c2"]
    assert broken(correct, state) == []


def test_fencing_saves_the_data_even_without_a_drift_margin() -> None:
    """Kleppmann's point: with fencing, a timing assumption that fails (here, clock
    drift) breaks who believes it holds the lock, but not the data."""

    class FencingOnly(NoDriftMargin):  # the variant, checked for FencedWrites alone
        def invariants(self) -> Sequence[Invariant[LockState]]:
            return [inv for inv in super().invariants() if inv.name == "FencedWrites"]

        def reachable(self) -> Sequence[Reachable[LockState]]:
            # Not vacuous: two clients do trust their leases at once, and write.
            return (
                Reachable("TwoHolders", "two clients trust their leases", lambda s: len(trusting(self, s)) == 2),
                Reachable("StaleWriteRejected", "a write was rejected", lambda s: s.storage.rejected),
            )

    fenced = explore(FencingOnly(Config(variant="no_drift_margin", max_time=2)))
    assert fenced.ok, fenced.violation
    assert lock("no_drift_margin").trusted == lock().trusted + 1  # the variant really differs


def test_release_by_non_holder_frees_the_next_holders_lock() -> None:
    # c1's lease expires and c2 gets the lock; c1, done at last, releases: the
    # server deletes the lock whoever holds it, and c1 gets it again while c2 works.
    plan: list[LockAction] = [Acquire("c1"), Grant("c1"), Acquire("c2"), Tick(), Tick(), Grant("c2"), Release("c1")]
    spec = lock("release_by_non_holder", max_requests=3)  # c1 asks again
    state = replay(spec, plan)
    assert broken(spec, state) == ["LeaseValidity"]
    state = replay(spec, [*plan, Acquire("c1"), Grant("c1")])
    assert trusting(spec, state) == ["c1", "c2"]
    # The correct server deletes only c1's own (expired) lease.
    correct = lock(max_requests=3)
    state = replay(correct, plan)
    assert list(state.server.leases) == [2] and broken(correct, state) == []
    assert correct.next_state(replay(correct, [*plan, Acquire("c1")]), Grant("c1")) is None


def test_renewal_after_expiry_revives_a_superseded_lease() -> None:
    plan: list[LockAction] = [Acquire("c1"), Grant("c1"), Acquire("c2"), Tick(), Tick(), Grant("c2"), Renew("c1")]
    spec = lock("renew_after_expiry")
    state = replay(spec, plan)
    assert broken(spec, state) == ["MutualExclusion"]
    assert trusting(spec, state) == ["c1", "c2"]
    # The correct server refuses, and c1 learns it has lost the lock.
    correct = lock()
    state = replay(correct, plan)
    assert state.clients["c1"].status == "idle" and broken(correct, state) == []


def test_crashed_holder_releases_the_lock_within_ttl() -> None:
    plan: list[LockAction] = [Acquire("c1"), Grant("c1"), Acquire("c2"), ClientCrash("c1"), Tick(), Tick()]
    spec = lock("no_expiry")
    state = replay(spec, plan)
    assert broken(spec, state) == ["AutomaticRelease"]
    assert spec.next_state(state, Grant("c2")) is None  # c2 waits for ever
    correct = lock()
    state = replay(correct, [*plan, Grant("c2")])  # exactly ttl ticks after the crash
    assert broken(correct, state) == [] and trusting(correct, state) == ["c2"]
    assert correct.next_state(replay(correct, plan[:-1]), Grant("c2")) is None  # not a tick earlier


def test_barging_overtakes_an_older_waiter() -> None:
    plan: list[LockAction] = [Acquire("c1"), Acquire("c2"), Grant("c2")]
    spec = lock("barging")
    assert broken(spec, replay(spec, plan)) == ["FirstComeFirstServed"]
    correct = lock()
    assert correct.next_state(replay(correct, plan[:-1]), Grant("c2")) is None


# The old server grants c1 a lease and is replaced; c2 asks the new server.
TAKEOVER: list[LockAction] = [Acquire("c1"), Grant("c1"), LeaderChange(), Acquire("c2")]


def test_new_server_that_grants_at_once_makes_two_holders() -> None:
    spec = lock("no_lease_wait")
    state = replay(spec, [*TAKEOVER, Grant("c2")])
    assert broken(spec, state) == ["MutualExclusion"]
    assert trusting(spec, state) == ["c1", "c2"]  # c1 knows nothing of the change
    # The correct new server waits one ttl from the takeover: c1's lease is over by then.
    correct = lock()
    assert correct.next_state(replay(correct, TAKEOVER), Grant("c2")) is None
    assert correct.next_state(replay(correct, [*TAKEOVER, Tick()]), Grant("c2")) is None
    state = replay(correct, [*TAKEOVER, Tick(), Tick(), Grant("c2")])
    assert broken(correct, state) == [] and trusting(correct, state) == ["c2"]


def test_new_server_whose_clock_runs_fast_needs_the_drift_margin() -> None:
    # c1's clock loses a tick, so it trusts its lease until the old lease's very
    # end; the new server waits one ttl by a clock that gained max_drift ticks.
    plan: list[LockAction] = [Acquire("c1"), Grant("c1"), Drift("c1"), LeaderChange(), Acquire("c2"), Tick()]
    spec = lock("no_takeover_drift_margin")
    state = replay(spec, [*plan, Grant("c2")])
    assert broken(spec, state) == ["MutualExclusion"] and trusting(spec, state) == ["c1", "c2"]
    correct = lock()
    assert correct.next_state(replay(correct, plan), Grant("c2")) is None


def test_a_leader_change_keeps_the_token_counter_and_loses_the_queue_and_the_lease_records() -> None:
    spec = lock(max_requests=3)
    state = replay(spec, [Acquire("c1"), Grant("c1"), Acquire("c2"), Tick(), LeaderChange()])
    assert state.server.queue == () and state.server.leases == FrozenMap()
    assert state.old_leases == FrozenMap({1: Lease("c1", 0, 2)})  # c1's lease is still in force
    assert (state.server.issued, state.server.epoch, state.server.grants_after) == (2, 1, 3)
    assert state.clients["c2"].status == "idle"  # its request went with the queue
    assert state.clients["c1"].status == LAPSED  # c1 knows nothing of the change
    assert LeaderChange() not in list(spec.actions(state))  # max_leader_changes = 1
    # c2 asks again and gets a fresh token: tokens are never reused.
    state = replay(spec, [Acquire("c1"), Grant("c1"), Acquire("c2"), Tick(), LeaderChange(), Acquire("c2")])
    assert state.clients["c2"].token == 3
    # The new server has no record of c1's lease: it refuses to renew it.
    renewed = spec.next_state(state, Renew("c1"))
    assert renewed is not None and renewed.clients["c1"].status == "idle"
    assert renewed.old_leases == state.old_leases  # c1's lease stays in force until it expires


def test_a_leader_change_drops_leases_already_expired() -> None:
    spec = lock()
    state = replay(spec, [Acquire("c1"), Grant("c1"), Tick(), Tick(), LeaderChange()])
    assert state.old_leases == FrozenMap() and state.server.grants_after == 4


# ----------------------------------------------------------------- other behaviour


def successors_everywhere(spec: Lock) -> list[tuple[LockState, LockAction, LockState]]:
    """Every transition between reachable states."""
    seen: set[LockState] = set()
    frontier = list(spec.init_states())
    steps = []
    while frontier:
        s = frontier.pop()
        if s in seen:
            continue
        seen.add(s)
        for a, t in spec.successors(s):
            steps.append((s, a, t))
            frontier.append(t)
    return steps


def test_fencing_tokens_increase_with_every_grant_and_leases_match_the_ttl() -> None:
    spec = lock(max_time=2)
    grants = 0
    for s, a, t in successors_everywhere(spec):
        if isinstance(a, Grant):
            grants += 1
            assert t.server.last_granted > s.server.last_granted
            lease = t.server.leases[t.server.last_granted]
            assert lease == Lease(a.client, s.now, s.now + spec.ttl)
    assert grants > 0


def test_lease_expiry_and_reaping() -> None:
    spec = lock()
    state = replay(spec, [Acquire("c1"), Grant("c1"), Tick()])
    assert spec.next_state(state, Expire(1)) is None  # still unexpired by the server's clock
    state = replay(spec, [Acquire("c1"), Grant("c1"), Tick(), Tick(), Expire(1)])
    assert state.server.leases == FrozenMap()
    assert state.clients["c1"].status == LAPSED  # it can still release or try to renew


def test_a_write_in_flight_survives_its_client_releasing_and_acquiring_again() -> None:
    spec = lock()
    state = replay(spec, [Acquire("c1"), Grant("c1"), Write("c1"), Release("c1"), Acquire("c1")])
    assert state.clients["c1"].in_flight == 1 and state.clients["c1"].token == 2


def test_time_and_requests_stop_at_their_bounds() -> None:
    spec = lock(max_time=1, max_requests=1)
    state = replay(spec, [Acquire("c1"), Tick()])
    assert Tick() not in list(spec.actions(state)) and spec.next_state(state, Tick()) is None
    assert Acquire("c2") not in list(spec.actions(state)) and spec.next_state(state, Acquire("c2")) is None


def test_action_order_does_not_depend_on_how_a_state_was_built() -> None:
    spec = lock(variant="barging")
    state = replay(spec, [Acquire("c1"), Acquire("c2"), Grant("c2"), Release("c2"), Grant("c1"), Tick(), Tick()])
    expired = {1: Lease("c1", 0, 2), 2: Lease("c2", 0, 2)}
    one_way = attrs.evolve(state, server=attrs.evolve(state.server, leases=FrozenMap(expired)))
    other_way = attrs.evolve(state, server=attrs.evolve(state.server, leases=FrozenMap(reversed(expired.items()))))
    assert one_way == other_way
    assert list(spec.actions(one_way)) == list(spec.actions(other_way))
    assert [a for a in spec.actions(one_way) if isinstance(a, Expire)] == [Expire(1), Expire(2)]


def test_unknown_or_disabled_actions_are_not_enabled() -> None:
    spec = lock()
    init = next(iter(spec.init_states()))
    for a in (Grant("c9"), Acquire("c9"), Grant("c1"), Renew("c1"), Release("c1"), Write("c1"), Expire(1)):
        assert spec.next_state(init, a) is None, a
    assert spec.next_state(init, ClientCrash("c1")) is None  # an idle client has nothing to lose
    assert spec.next_state(init, Drift("c1")) is None  # only a holder's clock matters


def test_type_invariant_detects_ill_typed_states() -> None:
    spec = lock()
    state = replay(spec, [Acquire("c1"), Grant("c1")])
    type_ok = next(inv for inv in spec.invariants() if inv.name == "TypeOK")
    assert type_ok.holds(state)
    holder = state.clients["c1"]
    assert holder.status == HOLDING
    assert not type_ok.holds(attrs.evolve(state, clients=state.clients.set("c1", attrs.evolve(holder, token=7))))
    assert not type_ok.holds(attrs.evolve(state, clients=state.clients.set("c1", attrs.evolve(holder, deadline=None))))
    assert not type_ok.holds(attrs.evolve(state, storage=attrs.evolve(state.storage, data=1)))


def test_actors_name_who_takes_each_step() -> None:
    actions = (Acquire("c1"), Grant("c1"), Expire(1), LeaderChange(), AcceptWrite("c2"), ClientCrash("c2"), Tick())
    assert [a.actor for a in actions] == [
        "c1",
        "server",
        "server",
        "server",
        "storage",
        "c2",
        "clock",
    ]


# ---------------------------------------------------------------------- symmetry


def rename(state: LockState, perm: dict[str, str]) -> LockState:
    """The same state with clients renamed (a symmetry of the lock spec)."""
    return LockState(
        state.now,
        FrozenMap({perm[c]: client for c, client in state.clients.items()}),
        attrs.evolve(
            state.server,
            queue=tuple((t, perm[c]) for t, c in state.server.queue),
            leases=FrozenMap(
                {t: attrs.evolve(lease, holder=perm[lease.holder]) for t, lease in state.server.leases.items()}
            ),
        ),
        state.storage,
        FrozenMap({t: attrs.evolve(lease, holder=perm[lease.holder]) for t, lease in state.old_leases.items()}),
    )


def test_canonical_is_exact_orbit_representative() -> None:
    spec = lock(clients=3, max_time=1, max_requests=2)
    states = {s for s, _, _ in successors_everywhere(spec)}
    perms = [dict(zip(spec.clients, p, strict=True)) for p in itertools.permutations(spec.clients)]
    by_orbit: dict[str, set[LockState]] = {}
    for s in states:
        orbit = min(canonical_text(rename(s, p)) for p in perms)
        by_orbit.setdefault(orbit, set()).add(spec.canonical(s))
    assert len(by_orbit) < len(states)  # the symmetry does merge states
    assert all(len(reps) == 1 for reps in by_orbit.values())  # one representative per orbit
    assert len({spec.canonical(s) for s in states}) == len(by_orbit)  # distinct across orbits


# -------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({"max_drift": 2, "ttl": 2}, "max_drift (2) must be below ttl (2)"),
        ({"clients": 0}, "clients must be between 1 and 4"),
        ({"max_time": -1}, "max_time must be between 0 and 12"),
    ],
)
def test_config_rejects_bad_parameters(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Config(**params)  # type: ignore[arg-type]


def test_an_unknown_variant_is_refused_where_the_spec_is_built() -> None:
    with pytest.raises(ValueError, match="unknown variant 'optimistic' of lock; known: unfenced_storage, "):
        lock("optimistic")


def test_cli_reports_a_bad_combination_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "lock", "-p", "ttl=2", "-p", "max_drift=2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "distcheck: error: parameters of lock: max_drift (2) must be below ttl (2)"


def test_cli_checks_a_variant(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "lock", "--variant", "barging"])
    out = capsys.readouterr().out
    assert code == 1 and "FirstComeFirstServed violated after 3 steps" in out
