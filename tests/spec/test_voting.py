"""Voting: each guard, effect, invariant clause and reachability property on
hand-built states, so that a change to any one of them makes a test here fail
(parity with TLC, refinement and the variants' exploration are in test_paxos.py).

Three acceptors (quorums: any two), two values, ballots 0..1 unless said.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.values import FrozenMap
from distcheck.spec.voting import IncreaseMaxBal, VoteFor, Voting, VotingConfig, VotingState, quorum_system

ACCEPTORS = ("a1", "a2", "a3")


def vs(max_bal: dict[str, int] | None = None, **votes: set[tuple[int, str]]) -> VotingState:
    """A state: promises (-1 unless given) and votes (none unless given), e.g.
    ``vs({"a1": 1}, a2={(0, "v1")})``."""
    return VotingState(
        votes=FrozenMap({a: frozenset(votes.get(a, ())) for a in ACCEPTORS}),
        max_bal=FrozenMap({a: (max_bal or {}).get(a, -1) for a in ACCEPTORS}),
    )


def failing(spec: Voting, s: VotingState) -> list[str]:
    return [inv.name for inv in spec.invariants() if not inv.holds(s)]


def allows(spec: Voting, s: VotingState, action: Any) -> bool:
    """``action`` is enabled in ``s``, and actions() and next_state() agree on it."""
    enabled = spec.next_state(s, action) is not None
    assert enabled == (action in spec.actions(s))
    return enabled


# -------------------------------------------------------------------------- guards


@pytest.mark.parametrize(
    "action,enabled,disabled",
    [
        # IncreaseMaxBal(a, b): b above a's promise (equal is not above).
        (IncreaseMaxBal("a1", 1), vs({"a1": 0}), vs({"a1": 1})),
        # VoteFor(a, b, v), conjunct 1: a has promised no ballot above b.
        (VoteFor("a1", 0, "v1"), vs({"a1": 0, "a2": 0}), vs({"a1": 1, "a2": 0})),
        # conjunct 2: a has not voted in b.
        (VoteFor("a1", 1, "v1"), vs({"a1": 1, "a2": 1}), vs({"a1": 1, "a2": 1}, a1={(1, "v2")})),
        # conjunct 3: no other acceptor voted for another value in b (the same value is fine).
        (
            VoteFor("a1", 1, "v1"),
            vs({"a1": 1, "a2": 1}, a2={(1, "v1")}),
            vs({"a1": 1, "a2": 1}, a2={(1, "v2")}),
        ),
        # conjunct 4: some quorum shows v safe at b: all of it promised b ...
        (VoteFor("a1", 1, "v1"), vs({"a1": 1, "a2": 1}), vs({"a1": 1, "a2": 0, "a3": 0})),
        # ... and its highest vote below b is for v.
        (
            VoteFor("a1", 1, "v2"),
            vs({"a1": 1, "a2": 1}, a2={(0, "v2")}),
            vs({"a1": 1, "a2": 1, "a3": 1}, a2={(0, "v1")}, a3={(0, "v1")}),
        ),
    ],
    ids=lambda v: str(v) if not isinstance(v, VotingState) else "",
)
def test_each_voting_guard(action: Any, enabled: VotingState, disabled: VotingState) -> None:
    spec = Voting()
    assert allows(spec, enabled, action)
    assert not allows(spec, disabled, action)


def test_shows_safe_at_takes_the_highest_vote_below_the_ballot() -> None:
    # With ballots 0..2, a quorum whose votes below 2 are v1@0 and v2@1 shows only v2
    # safe: a choice of the lowest vote, or of any reported vote, is refused.
    spec = Voting(VotingConfig(max_ballot=2))
    s = vs({"a1": 2, "a2": 2}, a1={(0, "v1")}, a2={(1, "v2")})
    assert allows(spec, s, VoteFor("a3", 2, "v2"))
    assert not allows(spec, s, VoteFor("a3", 2, "v1"))


def test_the_variants_drop_exactly_the_conjunct_they_name() -> None:
    unsafe = Voting(VotingConfig(variant="unsafe_vote"))
    assert allows(unsafe, vs({"a1": 1}), VoteFor("a1", 1, "v1"))  # no quorum promised 1
    assert not allows(unsafe, vs({"a1": 1}, a2={(1, "v2")}), VoteFor("a1", 1, "v1"))
    two = Voting(VotingConfig(variant="two_values_per_ballot"))
    assert allows(two, vs({"a1": 1, "a2": 1}, a2={(1, "v2")}), VoteFor("a1", 1, "v1"))
    assert not allows(two, vs({"a1": 1}), VoteFor("a1", 1, "v1"))
    halves = Voting(VotingConfig(variant="non_intersecting_quorums"))
    assert allows(halves, vs({"a1": 1}), VoteFor("a1", 1, "v1"))  # {a1} alone is a quorum
    assert not allows(halves, vs({"a1": 1}, a1={(1, "v2")}), VoteFor("a1", 1, "v1"))


def test_each_voting_effect() -> None:
    spec = Voting()
    assert spec.next_state(vs({"a1": 0}), IncreaseMaxBal("a1", 1)) == vs({"a1": 1})
    after = vs({"a1": 1, "a2": 1, "a3": 1}, a1={(1, "v2")})
    assert spec.next_state(vs({"a1": 0, "a2": 1, "a3": 1}), VoteFor("a1", 1, "v2")) == after


def test_next_state_refuses_parameters_outside_their_domains() -> None:
    spec = Voting()
    assert spec.next_state(vs(), IncreaseMaxBal("a4", 0)) is None
    assert spec.next_state(vs(), IncreaseMaxBal("a1", 2)) is None
    assert spec.next_state(vs({"a1": 0, "a2": 0}), VoteFor("a1", 0, "v3")) is None


# ---------------------------------------------------------------------- invariants


@pytest.mark.parametrize(
    "state",
    [
        VotingState(FrozenMap({"a1": frozenset(), "a2": frozenset()}), vs().max_bal),  # votes of an acceptor missing
        VotingState(vs().votes, FrozenMap({"a1": -1, "a2": -1})),  # a promise missing
        vs(a1={(2, "v1")}),  # a vote in a ballot that does not exist
        vs({"a1": 0}, a1={(0, "v3")}),  # a vote for a value that does not exist
        vs({"a1": 2}),  # a promise of a ballot that does not exist
    ],
)
def test_each_clause_of_type_ok(state: VotingState) -> None:
    spec = Voting()
    type_ok = next(inv for inv in spec.invariants() if inv.name == "TypeOK")
    assert not type_ok.holds(state)
    assert type_ok.holds(vs({"a1": 1}, a1={(1, "v2")}))


def test_one_value_per_ballot_votes_safe_and_agreement_each_on_its_own() -> None:
    spec = Voting()
    assert failing(spec, vs({"a1": 1, "a2": 1}, a1={(0, "v1"), (1, "v1")}, a2={(1, "v1")})) == []
    assert failing(spec, vs({"a1": 0, "a2": 0}, a1={(0, "v1")}, a2={(0, "v2")})) == ["OneValuePerBallot"]
    assert failing(spec, vs({"a1": 1}, a1={(1, "v1")})) == ["VotesSafe"]  # nobody ruled out ballot 0
    # Two chosen values with intersecting quorums always make some vote unsafe; with
    # the variant's disjoint quorums every vote is safe and Agreement alone fails.
    two_chosen = vs({"a1": 0, "a2": 1, "a3": 1}, a1={(0, "v1")}, a2={(1, "v2")})
    assert failing(Voting(VotingConfig(variant="non_intersecting_quorums")), two_chosen) == ["Agreement"]
    both = vs({"a1": 1, "a2": 1}, a1={(0, "v1"), (1, "v2")}, a2={(0, "v1"), (1, "v2")})
    assert "Agreement" in failing(spec, both)


# ------------------------------------------------------------------- reachability


def test_value_chosen_and_chosen_again_mean_what_they_say_and_are_reached() -> None:
    spec = Voting()
    props = {p.name: p.holds for p in spec.reachable()}
    assert props["ValueChosen"](vs({"a1": 0, "a2": 0}, a1={(0, "v1")}, a2={(0, "v1")}))
    assert not props["ValueChosen"](vs({"a1": 0, "a2": 0}, a1={(0, "v1")}, a2={(0, "v2")}))
    again = vs({"a1": 1, "a2": 1}, a1={(0, "v1"), (1, "v1")}, a2={(0, "v1"), (1, "v1")})
    assert props["ChosenAgain"](again)
    assert not props["ChosenAgain"](vs({"a1": 1, "a2": 1}, a1={(0, "v1"), (1, "v1")}, a2={(0, "v1")}))
    assert set(explore(spec).reached) == {"ValueChosen", "ChosenAgain"}
    # With one ballot a value cannot be chosen twice, so ChosenAgain is not stated.
    assert [p.name for p in Voting(VotingConfig(max_ballot=0)).reachable()] == ["ValueChosen"]


def test_cannot_vote_at_needs_a_promise_strictly_above_the_ballot() -> None:
    # a1's vote for v1 in ballot 1 is safe only if a quorum rules out ballot 0: a1
    # did (it promised 1), a2 with a promise of 0 can still vote in ballot 0.
    spec = Voting()
    assert failing(spec, vs({"a1": 1, "a2": 0}, a1={(1, "v1")})) == ["VotesSafe"]
    assert failing(spec, vs({"a1": 1, "a2": 1}, a1={(1, "v1")})) == []


@pytest.mark.parametrize(("acceptors", "majority", "half"), [(1, 1, 1), (3, 2, 1), (4, 3, 2), (5, 3, 2)])
def test_quorum_sizes(acceptors: int, majority: int, half: int) -> None:
    names = tuple(f"a{i}" for i in range(1, acceptors + 1))
    assert {len(q) for q in quorum_system(names)} == {majority}
    assert {len(q) for q in quorum_system(names, intersecting=False)} == {half}
    config = VotingConfig(acceptors=acceptors)
    assert {len(q) for q in Voting(config).quorums} == {majority}
    assert {len(q) for q in Voting(attrs.evolve(config, variant="non_intersecting_quorums")).quorums} == {half}
