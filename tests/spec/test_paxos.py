"""Paxos, Voting and Consensus: TLC parity, invariants, refinement, and the variants.

The parity figures are TLC's: Lamport's Paxos with 3 acceptors, majority quorums,
2 values and ballots 0..1 has 3,921 distinct states and depth 17 (857 under
acceptor symmetry); Voting with the same constants 599 states and depth 11 (6,752
and depth 16 with ballots 0..2); Consensus with 2 values 3 states and depth 2.
Besides the published 3,921, they were measured with TLC on benchmarks/tla/ (see
benchmarks/paxos_vs_tlc.py and docs/paxos.md).  Each variant's counterexample is
pinned as a list of actions that replays on the broken spec, and the correct spec
is shown to refuse the one step the variant allows.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from distcheck.checks.cli import main
from distcheck.checks.search.explore import Result, check_refinement_of, explore
from distcheck.spec.codec import to_json
from distcheck.spec.consensus import Choose, Consensus, ConsensusConfig, ConsensusState
from distcheck.spec.contract import Invariant, Refinement
from distcheck.spec.network import MessageSet
from distcheck.spec.paxos import (
    AcceptorRestart,
    Config,
    Message,
    Msg1a,
    Msg1b,
    Msg2a,
    Msg2b,
    Paxos,
    PaxosAction,
    PaxosState,
    Phase1a,
    Phase1b,
    Phase2a,
    Phase2b,
)
from distcheck.spec.values import FrozenMap
from distcheck.spec.voting import NO_BALLOT, IncreaseMaxBal, VoteFor, Voting, VotingConfig, VotingState, quorum_system

# ------------------------------------------------------------------------ helpers


def replay(spec: Paxos, actions: Sequence[PaxosAction]) -> PaxosState:
    """Run ``actions`` from the initial state; each must be one the spec offers."""
    (state,) = spec.init_states()
    for i, action in enumerate(actions, 1):
        assert action in list(spec.actions(state)), f"step {i}: {action} is not enabled"
        nxt = spec.next_state(state, action)
        assert nxt is not None, f"step {i}: {action} offered but next_state refuses it"
        state = nxt
    return state


def first_refused(spec: Paxos, actions: Sequence[PaxosAction]) -> PaxosAction | None:
    """The first action of ``actions`` that ``spec`` does not allow (None if all are)."""
    (state,) = spec.init_states()
    for action in actions:
        nxt = spec.next_state(state, action)
        if nxt is None:
            assert action not in list(spec.actions(state))
            return action
        state = nxt
    return None


def PaxosChecking(config: Config, *kept: str) -> Paxos:
    """A Paxos spec (the variant ``config`` names) that checks only the named
    invariants: to show that one of them on its own catches a variant (the explorer
    reports only the first one broken), or, with none, that the refinement check on
    its own does.  A subclass of the variant's own class, since a variant is a class."""

    class Checking(type(Paxos(config))):  # type: ignore[misc]
        def invariants(self) -> Sequence[Invariant[PaxosState]]:
            return [inv for inv in super().invariants() if inv.name in kept]

    spec: Paxos = Checking(config)
    return spec


def VotingWithoutInvariants(config: VotingConfig) -> Voting:
    class Unchecked(type(Voting(config))):  # type: ignore[misc]
        def invariants(self) -> Sequence[Invariant[VotingState]]:
            return ()

    spec: Voting = Unchecked(config)
    return spec


class PaxosAsConsensus(Paxos):
    """Paxos with the composed mapping Paxos ⇒ Voting ⇒ Consensus (and no invariants:
    the parity test checks those)."""

    def invariants(self) -> Sequence[Invariant[PaxosState]]:
        return ()

    def refinement(self) -> Refinement[PaxosState, Any]:
        to_consensus = self.voting.refinement()
        return Refinement(to_consensus.abstract, lambda s: to_consensus.mapping(self.voting_state(s)))


def reachable_states(spec: Voting) -> list[VotingState]:
    seen: set[VotingState] = set(spec.init_states())
    queue = deque(seen)
    while queue:
        for _, nxt in spec.successors(queue.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return list(seen)


def assert_ok(result: Result) -> None:
    assert result.ok, result.violation


# ------------------------------------------------------------------------- parity


def test_paxos_matches_tlc_state_count_and_depth() -> None:
    result = explore(Paxos(Config(acceptors=3, values=2, max_ballot=1)))
    assert_ok(result)
    assert result.stats.distinct_states == 3921
    assert result.stats.depth == 17
    assert set(result.reached) == {"ValueChosen", "ChosenAgain"}


def test_paxos_under_acceptor_symmetry_matches_tlc() -> None:
    result = explore(Paxos(Config(acceptors=3, values=2, max_ballot=1)), symmetry=True)
    assert_ok(result)
    assert (result.stats.distinct_states, result.stats.depth) == (857, 17)


@pytest.mark.parametrize(("max_ballot", "distinct", "depth"), [(1, 599, 11), (2, 6752, 16)])
def test_voting_matches_tlc_state_count_and_depth(max_ballot: int, distinct: int, depth: int) -> None:
    result = explore(Voting(VotingConfig(acceptors=3, values=2, max_ballot=max_ballot)))
    assert_ok(result)
    assert (result.stats.distinct_states, result.stats.depth) == (distinct, depth)
    assert set(result.reached) == {"ValueChosen", "ChosenAgain"}


def test_consensus_matches_tlc_state_count() -> None:
    result = explore(Consensus(ConsensusConfig(values=2)))
    assert_ok(result)
    assert (result.stats.distinct_states, result.stats.depth) == (3, 2)


def test_cli_reports_the_tlc_figure() -> None:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["check", "paxos", "-p", "acceptors=3", "-p", "values=2", "-p", "max_ballot=1", "--json"])
    report = json.loads(out.getvalue())
    assert code == 0
    assert report["verdict"] == "ok"
    assert report["distinct_states"] == 3921


# -------------------------------------------------------- other sizes, refinement


@pytest.mark.parametrize(
    ("acceptors", "values", "max_ballot"),
    [(1, 2, 1), (2, 2, 1), (3, 1, 1), (4, 2, 0), (5, 2, 0)],
)
def test_paxos_is_safe_at_other_sizes(acceptors: int, values: int, max_ballot: int) -> None:
    result = explore(Paxos(Config(acceptors=acceptors, values=values, max_ballot=max_ballot)))
    assert_ok(result)
    assert "ValueChosen" in result.reached


def test_paxos_refines_voting() -> None:
    assert_ok(check_refinement_of(PaxosChecking(Config())))


def test_voting_refines_consensus() -> None:
    assert_ok(check_refinement_of(Voting()))


def test_paxos_refines_consensus_through_voting() -> None:
    assert_ok(check_refinement_of(PaxosAsConsensus()))


@pytest.mark.parametrize("variant", ["broken_promise", "ignore_reported_value", "shared_ballot", "forgotten_vote"])
def test_broken_protocol_steps_do_not_refine_voting(variant: str) -> None:
    result = check_refinement_of(PaxosChecking(Config(variant=variant)))
    assert result.violation is not None and result.violation.kind == "refinement"


def test_non_intersecting_quorums_break_voting_not_its_implementation() -> None:
    # Paxos with disjoint quorums is a faithful implementation of Voting with the
    # same quorums: the mistake lives in the abstraction, which no longer refines
    # Consensus.
    # Two acceptors keep it quick: each one alone is a quorum.
    broken = Config(acceptors=2, variant="non_intersecting_quorums")
    assert_ok(check_refinement_of(PaxosChecking(broken)))
    abstract = VotingConfig(acceptors=2, variant="non_intersecting_quorums")
    result = check_refinement_of(VotingWithoutInvariants(abstract))
    assert result.violation is not None and result.violation.name == "RefinesConsensus"


# ------------------------------------------------------------------------- variants


# Each counterexample tells the variant's story and ends with two values chosen, so
# Agreement alone catches every variant; the step named alongside it is the one
# the correct protocol refuses.

BROKEN_PROMISE: list[PaxosAction] = [
    Phase1a(0),
    Phase1a(1),
    Phase1b("a1", 0),
    Phase1b("a2", 0),
    Phase2a(0, "v1"),  # the proposer of ballot 0 asks for v1 ...
    Phase1b("a1", 1),  # ... but a1 and a3 promise ballot 1, reporting no vote,
    Phase1b("a3", 1),
    Phase2a(1, "v2"),  # so ballot 1 may propose v2,
    Phase2b("a1", 1, "v2"),
    Phase2b("a3", 1, "v2"),  # and v2 is chosen.
    Phase2b("a1", 0, "v1"),  # a1 votes below its promise,
    Phase2b("a2", 0, "v1"),  # and v1 is chosen too.
]

IGNORE_REPORTED_VALUE: list[PaxosAction] = [
    Phase1a(0),
    Phase1b("a1", 0),
    Phase1b("a2", 0),
    Phase2a(0, "v1"),
    Phase2b("a1", 0, "v1"),
    Phase2b("a2", 0, "v1"),  # v1 is chosen in ballot 0.
    Phase1a(1),
    Phase1b("a2", 1),  # a2 reports its vote for v1 ...
    Phase1b("a3", 1),
    Phase2a(1, "v2"),  # ... and the proposer of ballot 1 ignores it.
    Phase2b("a2", 1, "v2"),
    Phase2b("a3", 1, "v2"),  # v2 is chosen too.
]

# With four acceptors "at least half" makes {a1, a2} and {a3, a4} both quorums.
NON_INTERSECTING_QUORUMS: list[PaxosAction] = [
    Phase1a(0),
    Phase1b("a1", 0),
    Phase1b("a2", 0),
    Phase2a(0, "v1"),  # {a1, a2} is not a majority of four acceptors.
    Phase2b("a1", 0, "v1"),
    Phase2b("a2", 0, "v1"),  # v1 is chosen by {a1, a2}.
    Phase1a(1),
    Phase1b("a3", 1),
    Phase1b("a4", 1),  # {a3, a4} never heard of v1,
    Phase2a(1, "v2"),
    Phase2b("a3", 1, "v2"),
    Phase2b("a4", 1, "v2"),  # and v2 is chosen by it.
]

FORGOTTEN_VOTE: list[PaxosAction] = [
    Phase1a(0),
    Phase1b("a1", 0),
    Phase1b("a2", 0),
    Phase2a(0, "v1"),
    Phase2b("a1", 0, "v1"),
    Phase2b("a2", 0, "v1"),  # v1 is chosen by {a1, a2}.
    AcceptorRestart("a1"),  # a1 comes back with its promise but without its vote,
    Phase1a(1),
    Phase1b("a1", 1),  # so it reports "no vote",
    Phase1b("a3", 1),
    Phase2a(1, "v2"),  # and {a1, a3} lets ballot 1 propose v2,
    Phase2b("a1", 1, "v2"),
    Phase2b("a3", 1, "v2"),  # which is chosen too.
]

SHARED_BALLOT: list[PaxosAction] = [
    Phase1a(0),
    Phase1b("a1", 0),
    Phase1b("a2", 0),
    Phase1b("a3", 0),
    Phase2a(0, "v1"),  # one proposer of ballot 0 asks for v1,
    Phase2a(0, "v2"),  # another, using the same ballot number, asks for v2.
    Phase2b("a1", 0, "v1"),
    Phase2b("a2", 0, "v1"),  # v1 is chosen by {a1, a2};
    Phase2b("a3", 0, "v2"),
    Phase2b("a2", 0, "v2"),  # v2 by {a2, a3}: a2 accepts both, same ballot.
]


COUNTEREXAMPLES = [
    ("broken_promise", 3, BROKEN_PROMISE, Phase2b("a1", 0, "v1")),
    ("ignore_reported_value", 3, IGNORE_REPORTED_VALUE, Phase2a(1, "v2")),
    ("non_intersecting_quorums", 4, NON_INTERSECTING_QUORUMS, Phase2a(0, "v1")),
    ("shared_ballot", 3, SHARED_BALLOT, Phase2a(0, "v2")),
    ("forgotten_vote", 3, FORGOTTEN_VOTE, AcceptorRestart("a1")),
]


def test_every_variant_has_a_pinned_counterexample() -> None:
    assert sorted(variant for variant, *_ in COUNTEREXAMPLES) == sorted(Paxos.variants())


@pytest.mark.parametrize(("variant", "acceptors", "actions", "refused"), COUNTEREXAMPLES)
def test_variant_counterexample(variant: str, acceptors: int, actions: list[PaxosAction], refused: PaxosAction) -> None:
    broken = Paxos(Config(acceptors=acceptors, variant=variant))
    final = replay(broken, actions)
    assert broken.chosen(final) == {"v1", "v2"}
    assert "Agreement" in [inv.name for inv in broken.invariants() if not inv.holds(final)]
    assert first_refused(Paxos(Config(acceptors=acceptors)), actions) == refused


# ---------------------------------------------- every invariant can fail somewhere


@pytest.mark.parametrize(
    ("variant", "invariant"),
    [
        ("broken_promise", "MsgInv"),
        ("ignore_reported_value", "MsgInv"),
        ("non_intersecting_quorums", "Agreement"),
        ("shared_ballot", "MsgInv"),
        ("forgotten_vote", "AccInv"),
    ],
)
def test_variant_is_caught_first_by(variant: str, invariant: str) -> None:
    """The invariant the module docstring names for each variant is the one the
    shortest counterexample breaks."""
    result = explore(Paxos(Config(variant=variant)))
    assert result.violation is not None and result.violation.name == invariant


@pytest.mark.parametrize(
    ("variant", "invariant"),
    [
        ("unsafe_vote", "VotesSafe"),
        ("two_values_per_ballot", "OneValuePerBallot"),
        ("non_intersecting_quorums", "Agreement"),
    ],
)
def test_voting_variant_is_caught_first_by(variant: str, invariant: str) -> None:
    result = explore(Voting(VotingConfig(variant=variant)))
    assert result.violation is not None and result.violation.name == invariant


def test_acc_inv_alone_catches_the_broken_promise_too() -> None:
    result = explore(PaxosChecking(Config(variant="broken_promise"), "AccInv"))
    assert result.violation is not None and result.violation.name == "AccInv"


def _state(
    msgs: list[Message],
    max_bal: FrozenMap[str, int] | None = None,
) -> PaxosState:
    """The initial state with other messages and, optionally, other promises."""
    (init,) = Paxos().init_states()
    return attrs.evolve(init, msgs=MessageSet(frozenset(msgs)), max_bal=max_bal or init.max_bal)


def test_type_ok_rejects_values_outside_their_types() -> None:
    # No protocol mistake produces an ill-typed state, so TypeOK is shown failing on
    # hand-built ones.
    spec = Paxos()
    (init,) = spec.init_states()
    (type_ok,) = PaxosChecking(Config(), "TypeOK").invariants()
    assert not type_ok.holds(_state([], max_bal=init.max_bal.set("a1", 2)))
    assert not type_ok.holds(_state([Msg2a(0, "v3")]))
    assert not type_ok.holds(_state([Msg1b("a4", 0, NO_BALLOT, None)]))
    assert type_ok.holds(_state([Msg1b("a3", 0, NO_BALLOT, None)]))


def test_consensus_invariants_reject_what_consensus_forbids() -> None:
    # Consensus has no variants (a broken problem statement is no protocol mistake),
    # so its invariants are shown failing on hand-built states.
    invariants = {inv.name: inv for inv in Consensus().invariants()}
    assert not invariants["Agreement"].holds(ConsensusState(frozenset({"v1", "v2"})))
    assert not invariants["Validity"].holds(ConsensusState(frozenset({"v3"})))
    assert invariants["Validity"].holds(ConsensusState(frozenset({"v2"})))


# --------------------------------------------------- the contract and the vocabulary


def test_offered_actions_are_enabled_sorted_and_round_trip_through_json() -> None:
    spec = Paxos()
    state = replay(spec, IGNORE_REPORTED_VALUE[:9])
    offered = list(spec.actions(state))
    assert offered == list(spec.actions(state))
    assert Phase2a(1, "v1") in offered and Phase2a(1, "v2") not in offered
    for action in offered:
        assert spec.next_state(state, action) is not None
        assert spec.action_from_json(to_json(action)) == action


def test_quorum_systems() -> None:
    acceptors = ("a1", "a2", "a3", "a4")
    majorities = quorum_system(acceptors)
    assert all(len(q1 & q2) > 0 for q1 in majorities for q2 in majorities)
    halves = quorum_system(acceptors, intersecting=False)
    assert any(not (q1 & q2) for q1 in halves for q2 in halves)


def test_shows_safe_at_agrees_with_its_definition() -> None:
    """ShowsSafeAt checks only the highest ballot below b in which the quorum voted;
    the TLA+ definition quantifies over every ballot c.  Compare on every reachable
    Voting state of a small instance with four ballots, for every set of acceptors."""
    spec = Voting(VotingConfig(acceptors=2, values=2, max_ballot=3))
    acceptor_sets = [frozenset({"a1"}), frozenset({"a2"}), frozenset({"a1", "a2"})]

    def literal(s: VotingState, q: frozenset[str], b: int, v: str) -> bool:
        return all(s.max_bal[a] >= b for a in q) and any(
            (c == NO_BALLOT or any(spec.voted_for(s, a, c, v) for a in q))
            and all(spec.did_not_vote_at(s, a, d) for d in range(c + 1, b) for a in q)
            for c in range(NO_BALLOT, b)
        )

    states = reachable_states(spec)
    assert len(states) > 1000
    for s in states:
        for q in acceptor_sets:
            for b in spec.ballots:
                for v in spec.values:
                    assert spec.shows_safe_at(s, q, b, v) == literal(s, q, b, v)


def test_consensus_chooses_once() -> None:
    spec = Consensus()
    (init,) = spec.init_states()
    after = spec.next_state(init, next(iter(spec.actions(init))))
    assert after == ConsensusState(frozenset({"v1"}))
    assert list(spec.actions(after)) == []


# ------------------------------------------------------------------------------
# Each guard, effect, invariant clause and reachability property of Paxos on
# hand-built states: a change to any one of them makes one of these fail.  Three
# acceptors (quorums: any two), two values, ballots 0..1 unless said.

ACCEPTORS = ("a1", "a2", "a3")


def px(
    msgs: Sequence[Message] = (),
    max_bal: dict[str, int] | None = None,
    last_vote: dict[str, tuple[int, str | None]] | None = None,
) -> PaxosState:
    """A state: the messages sent, promises (-1 unless given) and last votes (none
    unless given), e.g. ``px([Msg1a(0)], {"a1": 0}, {"a1": (0, "v1")})``."""
    votes = last_vote or {}
    return PaxosState(
        max_bal=FrozenMap({a: (max_bal or {}).get(a, NO_BALLOT) for a in ACCEPTORS}),
        max_vbal=FrozenMap({a: votes[a][0] if a in votes else NO_BALLOT for a in ACCEPTORS}),
        max_val=FrozenMap({a: votes[a][1] if a in votes else None for a in ACCEPTORS}),
        msgs=MessageSet(frozenset(msgs)),
    )


def allows(spec: Paxos, s: PaxosState, action: PaxosAction) -> bool:
    """``action`` is enabled in ``s``, and actions() and next_state() agree on it."""
    enabled = spec.next_state(s, action) is not None
    assert enabled == (action in spec.actions(s))
    return enabled


def failing(spec: Paxos, s: PaxosState) -> list[str]:
    return [inv.name for inv in spec.invariants() if not inv.holds(s)]


NO_REPORT = (NO_BALLOT, None)


def promise(acc: str, bal: int, report: tuple[int, str | None] = NO_REPORT) -> Msg1b:
    return Msg1b(acc, bal, *report)


@pytest.mark.parametrize(
    "action,enabled,disabled",
    [
        # Phase1b(a, b): a 1a for b was sent ...
        (Phase1b("a1", 1), px([Msg1a(1)], {"a1": 0}), px([Msg1a(0)], {"a1": 0})),
        # ... and b is above a's promise (equal is not above).
        (Phase1b("a1", 1), px([Msg1a(1)], {"a1": 0}), px([Msg1a(1)], {"a1": 1})),
        # Phase2a(b, v): no 2a for b was sent (not even for another value) ...
        (
            Phase2a(1, "v2"),
            px([promise("a1", 1), promise("a2", 1)], {"a1": 1, "a2": 1}),
            px([promise("a1", 1), promise("a2", 1), Msg2a(1, "v1")], {"a1": 1, "a2": 1}),
        ),
        # ... a whole quorum promised b (promises for another ballot do not count) ...
        (
            Phase2a(1, "v2"),
            px([promise("a1", 1), promise("a2", 1)], {"a1": 1, "a2": 1}),
            px([promise("a1", 1), promise("a2", 0)], {"a1": 1, "a2": 0}),
        ),
        # ... and v is the value of the highest vote that quorum reports ...
        (
            Phase2a(1, "v1"),
            px([promise("a1", 1, (0, "v1")), promise("a2", 1)], {"a1": 1, "a2": 1}, {"a1": (0, "v1")}),
            px([promise("a1", 1, (0, "v2")), promise("a2", 1)], {"a1": 1, "a2": 1}, {"a1": (0, "v2")}),
        ),
        # ... where reports from outside the quorum do not count.
        (
            Phase2a(1, "v2"),
            px([promise("a1", 1), promise("a2", 1), promise("a3", 1, (0, "v1"))], {"a1": 1, "a2": 1, "a3": 1}),
            px([promise("a1", 1), promise("a3", 1, (0, "v1"))], {"a1": 1, "a3": 1}),
        ),
        # Phase2b(a, b, v): a 2a for (b, v) was sent ...
        (Phase2b("a1", 1, "v1"), px([Msg2a(1, "v1")], {"a1": 1}), px([Msg2a(1, "v2")], {"a1": 1})),
        # ... and a promised no ballot above b (equal is not above).
        (Phase2b("a1", 0, "v1"), px([Msg2a(0, "v1")], {"a1": 0}), px([Msg2a(0, "v1")], {"a1": 1})),
    ],
    ids=lambda v: str(v) if not isinstance(v, PaxosState) else "",
)
def test_each_paxos_guard(action: PaxosAction, enabled: PaxosState, disabled: PaxosState) -> None:
    spec = Paxos()
    assert allows(spec, enabled, action)
    assert not allows(spec, disabled, action)


def test_phase1a_is_always_enabled_within_the_ballots() -> None:
    spec = Paxos()
    assert allows(spec, px(), Phase1a(1)) and allows(spec, px([Msg1a(1)]), Phase1a(1))  # a resend stutters
    assert spec.next_state(px(), Phase1a(2)) is None
    assert spec.next_state(px([Msg1a(0)]), Phase1b("a4", 0)) is None


def test_phase2a_takes_the_value_of_the_highest_ballot_vote_reported() -> None:
    # With ballots 0..2: a1 reports v1@0 and a2 reports v2@1, so ballot 2 may propose
    # v2 only.  Proposing the lowest reported vote, or any reported vote, is refused.
    spec = Paxos(Config(max_ballot=2))
    reports = [promise("a1", 2, (0, "v1")), promise("a2", 2, (1, "v2"))]
    s = px(reports, {"a1": 2, "a2": 2}, {"a1": (0, "v1"), "a2": (1, "v2")})
    assert allows(spec, s, Phase2a(2, "v2"))
    assert not allows(spec, s, Phase2a(2, "v1"))
    # Reports from another ballot's phase 1 do not count for this one.
    other = px([promise("a1", 1, (0, "v1")), promise("a2", 2)], {"a1": 2, "a2": 2}, {"a1": (0, "v1")})
    assert not allows(spec, other, Phase2a(2, "v2"))


def test_each_paxos_effect() -> None:
    spec = Paxos()
    assert spec.next_state(px(), Phase1a(0)) == px([Msg1a(0)])
    s = px([Msg1a(1)], {"a1": 0}, {"a1": (0, "v2")})
    assert spec.next_state(s, Phase1b("a1", 1)) == px(
        [Msg1a(1), promise("a1", 1, (0, "v2"))], {"a1": 1}, {"a1": (0, "v2")}
    )
    s = px([promise("a1", 0), promise("a2", 0)], {"a1": 0, "a2": 0})
    assert spec.next_state(s, Phase2a(0, "v2")) == px([*s.msgs.sent, Msg2a(0, "v2")], {"a1": 0, "a2": 0})
    s = px([Msg2a(1, "v1")])
    after = px([Msg2a(1, "v1"), Msg2b("a3", 1, "v1")], {"a3": 1}, {"a3": (1, "v1")})
    assert spec.next_state(s, Phase2b("a3", 1, "v1")) == after


def test_the_variants_relax_exactly_the_guard_they_name() -> None:
    broken = Paxos(Config(variant="broken_promise"))
    assert allows(broken, px([Msg2a(0, "v1")], {"a1": 1}), Phase2b("a1", 0, "v1"))
    assert not allows(broken, px([Msg2a(0, "v2")], {"a1": 1}), Phase2b("a1", 0, "v1"))
    assert broken.next_state(px([Msg2a(0, "v1")], {"a1": 1}), Phase2b("a1", 0, "v1")) == px(
        [Msg2a(0, "v1"), Msg2b("a1", 0, "v1")], {"a1": 0}, {"a1": (0, "v1")}
    )
    quorum = [promise("a1", 1, (0, "v1")), promise("a2", 1)]
    ignoring = Paxos(Config(variant="ignore_reported_value"))
    assert allows(ignoring, px(quorum, {"a1": 1, "a2": 1}, {"a1": (0, "v1")}), Phase2a(1, "v2"))
    assert not allows(ignoring, px(quorum[:1], {"a1": 1}, {"a1": (0, "v1")}), Phase2a(1, "v2"))
    shared = Paxos(Config(variant="shared_ballot"))
    assert allows(shared, px([*quorum, Msg2a(1, "v1")], {"a1": 1, "a2": 1}), Phase2a(1, "v1"))
    assert not allows(shared, px([*quorum, Msg2a(1, "v1")], {"a1": 1, "a2": 1}), Phase2a(1, "v2"))
    halves = Paxos(Config(variant="non_intersecting_quorums"))
    assert halves.quorums == halves.voting.quorums == quorum_system(ACCEPTORS, intersecting=False)
    assert allows(halves, px([promise("a1", 1)], {"a1": 1}), Phase2a(1, "v2"))


def test_restart_forgets_a_vote_only_in_its_variant() -> None:
    voted = px([Msg2a(0, "v1"), Msg2b("a1", 0, "v1")], {"a1": 0}, {"a1": (0, "v1")})
    forgetful = Paxos(Config(variant="forgotten_vote"))
    assert allows(forgetful, voted, AcceptorRestart("a1"))
    assert forgetful.next_state(voted, AcceptorRestart("a1")) == px([Msg2a(0, "v1"), Msg2b("a1", 0, "v1")], {"a1": 0})
    assert not allows(forgetful, voted, AcceptorRestart("a2"))  # no vote to lose: a stutter, left out
    assert not allows(Paxos(), voted, AcceptorRestart("a1"))


# ---------------------------------------------------------------------- invariants


def test_each_clause_of_paxos_type_ok() -> None:
    spec = Paxos()
    (type_ok,) = [inv for inv in spec.invariants() if inv.name == "TypeOK"]
    good = px(
        [Msg1a(1), promise("a1", 1, (0, "v1")), Msg2a(0, "v1"), Msg2b("a1", 0, "v1")], {"a1": 1}, {"a1": (0, "v1")}
    )
    assert type_ok.holds(good)
    init = px()
    bad = [
        attrs.evolve(init, max_bal=FrozenMap({"a1": -1, "a2": -1})),  # an acceptor missing
        attrs.evolve(init, max_vbal=init.max_vbal.set("a4", -1)),  # one too many
        attrs.evolve(init, max_bal=init.max_bal.set("a1", 2)),  # a promise outside the ballots
        attrs.evolve(init, max_vbal=init.max_vbal.set("a1", 2)),  # a vote outside the ballots
        attrs.evolve(init, max_val=init.max_val.set("a1", "v3")),  # a value that is not one
        px([Msg1a(2)]),
        px([Msg1b("a4", 0, NO_BALLOT, None)]),
        px([Msg1b("a1", 2, NO_BALLOT, None)]),
        px([Msg1b("a1", 1, 2, "v1")]),
        px([Msg1b("a1", 1, 0, "v3")]),
        px([Msg2a(2, "v1")]),
        px([Msg2a(0, "v3")]),
        px([Msg2b("a4", 0, "v1")]),
        px([Msg2b("a1", 2, "v1")]),
        px([Msg2b("a1", 0, "v3")]),
        px(["hello"]),  # type: ignore[list-item]  # a message that is no message
    ]
    for state in bad:
        assert not type_ok.holds(state), state


@pytest.mark.parametrize(
    "state,broken",
    [
        # AccInv: max_vbal is -1 exactly when max_val is None ...
        (px(max_bal={"a1": 0}, last_vote={"a1": (0, None)}), ["AccInv"]),
        # ... max_vbal is no higher than the promise ...
        (px([Msg2a(0, "v1"), Msg2b("a1", 0, "v1")], last_vote={"a1": (0, "v1")}), ["AccInv"]),
        # ... (max_vbal, max_val) is a vote the acceptor cast ...
        (px([Msg2a(0, "v1")], {"a1": 0}, {"a1": (0, "v1")}), ["AccInv"]),
        # ... and its latest: a vote above it breaks AccInv, and MsgInv's 2b clause,
        # which states the same of the 2b message.
        (px([Msg2a(0, "v1"), Msg2b("a1", 0, "v1")], {"a1": 0}), ["AccInv", "MsgInv"]),
        # MsgInv, 1b: no higher than the sender's promise ...
        (px([Msg1a(1), promise("a1", 1)], {"a1": 0}), ["MsgInv"]),
        # ... a report is (-1, None) or a vote ...
        (px([promise("a1", 1, (0, None))], {"a1": 1}), ["MsgInv"]),
        # ... the sender cast ...
        (px([promise("a1", 1, (0, "v1"))], {"a1": 1}), ["MsgInv"]),
        # ... and its latest below the promised ballot.
        (px([Msg2a(0, "v1"), Msg2b("a1", 0, "v1"), promise("a1", 1)], {"a1": 1}, {"a1": (0, "v1")}), ["MsgInv"]),
        # MsgInv, 2a: safe at its ballot (nobody ruled out ballot 0) ...
        (px([Msg2a(1, "v1")]), ["MsgInv"]),
        # ... and the only 2a of its ballot.
        (px([Msg2a(0, "v1"), Msg2a(0, "v2")]), ["MsgInv"]),
        # MsgInv, 2b: copies a 2a.
        (px([Msg2b("a1", 0, "v1")], {"a1": 0}, {"a1": (0, "v1")}), ["MsgInv"]),
    ],
)
def test_each_clause_of_acc_inv_and_msg_inv(state: PaxosState, broken: list[str]) -> None:
    assert failing(Paxos(), state) == broken


def test_a_state_that_breaks_no_clause() -> None:
    # The reference point of the states above: v1 chosen in ballot 0, reported in
    # ballot 1's phase 1 and proposed again there.
    msgs: list[Message] = [
        Msg2a(0, "v1"),
        Msg2b("a1", 0, "v1"),
        Msg2b("a2", 0, "v1"),
        Msg1a(1),
        promise("a2", 1, (0, "v1")),
        promise("a3", 1),
        Msg2a(1, "v1"),
    ]
    s = px(msgs, {"a1": 0, "a2": 1, "a3": 1}, {"a1": (0, "v1"), "a2": (0, "v1")})
    assert failing(Paxos(), s) == []
    assert Paxos().chosen(s) == {"v1"}


def test_agreement_on_its_own() -> None:
    # Two values chosen while every message tells the truth: possible only with the
    # variant's disjoint quorums ({a1} and {a2} at three acceptors).
    msgs: list[Message] = [Msg2a(0, "v1"), Msg2b("a1", 0, "v1"), Msg2a(1, "v2"), Msg2b("a2", 1, "v2")]
    s = px(msgs, {"a1": 0, "a2": 1, "a3": 1}, {"a1": (0, "v1"), "a2": (1, "v2")})
    assert failing(Paxos(Config(variant="non_intersecting_quorums")), s) == ["Agreement"]
    assert "Agreement" in failing(
        Paxos(), attrs.evolve(s, msgs=s.msgs.send(Msg2b("a3", 0, "v1"), Msg2b("a3", 1, "v2")))
    )


# ------------------------------------------------------------------- reachability


def test_value_chosen_and_chosen_again_mean_what_they_say() -> None:
    spec = Paxos()
    props = {p.name: p.holds for p in spec.reachable()}
    once = px([Msg2a(0, "v1"), Msg2b("a1", 0, "v1"), Msg2b("a3", 0, "v1")])
    assert props["ValueChosen"](once) and not props["ChosenAgain"](once)
    assert not props["ValueChosen"](px([Msg2a(0, "v1"), Msg2b("a1", 0, "v1")]))
    assert not props["ValueChosen"](px([Msg2a(0, "v1"), Msg2b("a1", 0, "v1"), Msg2b("a2", 1, "v1")]))
    twice = once.msgs.send(Msg2a(1, "v1"), Msg2b("a1", 1, "v1"), Msg2b("a2", 1, "v1"))
    assert props["ChosenAgain"](attrs.evolve(once, msgs=twice))
    assert [p.name for p in Paxos(Config(max_ballot=0)).reachable()] == ["ValueChosen"]


# -------------------------------------------------------------- three ballots


class LowestReportedValue(Paxos):
    """A mistake of this test's own: the proposer takes the value of the *lowest*
    ballot vote reported instead of the highest.  Indistinguishable from the
    reference with two ballots (only ballot 0 can be reported), so it needs three."""

    def allowed_by_reports(self, reports: Sequence[Msg1b]) -> frozenset[str]:
        votes = [m for m in reports if m.mbal != NO_BALLOT]
        if not votes:
            return frozenset(self.values)
        lowest = min(m.mbal for m in votes)
        return frozenset(m.mval for m in votes if m.mbal == lowest and m.mval is not None)


LOWEST_REPORTED_VALUE: list[PaxosAction] = [
    Phase1a(0),
    Phase1b("a1", 0),
    Phase1b("a2", 0),
    Phase2a(0, "v1"),
    Phase2b("a1", 0, "v1"),  # a1 votes v1 in ballot 0 (not chosen),
    Phase1a(1),
    Phase1b("a2", 1),
    Phase1b("a3", 1),
    Phase2a(1, "v2"),  # {a2, a3} never saw it, so ballot 1 may propose v2,
    Phase2b("a2", 1, "v2"),
    Phase2b("a3", 1, "v2"),  # and v2 is chosen in ballot 1.
    Phase1a(2),
    Phase1b("a1", 2),  # a1 reports v1@0,
    Phase1b("a2", 2),  # a2 reports v2@1:
    Phase2a(2, "v1"),  # taking the lowest proposes v1 against the chosen v2.
]


def test_three_ballots_explored_and_a_wrong_choice_of_reported_value_is_caught() -> None:
    """With ballots 0..2 a quorum can report votes from two earlier ballots, the case
    that makes Paxos take the *highest*.  Two acceptors keep the whole space small
    (1,501 states, under a second; three acceptors have 185,369): it is explored
    whole and safe, reaching both properties, and the proposer that ignores reports
    is caught there.  Taking the lowest report instead needs three acceptors to show
    (with two, every phase 1 hears the same history), so it is pinned as a path."""
    size = Config(acceptors=2, values=2, max_ballot=2)
    result = explore(Paxos(size))
    assert_ok(result)
    assert (result.stats.distinct_states, result.stats.depth) == (1501, 19)
    assert set(result.reached) == {"ValueChosen", "ChosenAgain"}
    ignoring = explore(Paxos(attrs.evolve(size, variant="ignore_reported_value")))
    assert ignoring.violation is not None and ignoring.violation.name == "MsgInv"

    three = Config(max_ballot=2)
    final = replay(LowestReportedValue(three), LOWEST_REPORTED_VALUE)
    assert failing(LowestReportedValue(three), final) == ["MsgInv"]  # the 2a of ballot 2 is unsafe
    assert first_refused(Paxos(three), LOWEST_REPORTED_VALUE) == Phase2a(2, "v1")


def test_actors_name_who_takes_each_step() -> None:
    # An acceptor's steps are the acceptor's; a ballot names its proposer.
    assert [a.actor for a in (Phase1a(1), Phase1b("a2", 0), Phase2a(0, "v1"), Phase2b("a3", 1, "v2"))] == [
        "p1",
        "a2",
        "p0",
        "a3",
    ]
    assert IncreaseMaxBal("a2", 1).actor == VoteFor("a2", 1, "v1").actor == "a2"
    assert Choose("v1").actor == "consensus"
