"""Raft's z3 proof: ElectionInv proves ElectionSafety on an abstraction of the
election part; the abstraction simulates the executable spec (variants included) and
the cross-check notices when it does not; vote_twice and forget_vote make the proof
fail at the step that goes wrong, a step the spec itself takes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
import z3

from distcheck.checks.cli import main
from distcheck.checks.proofs.crosscheck import cross_check, reachable_states
from distcheck.checks.proofs.induction import obligations
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.raft import (
    ElectionAction,
    MessageLost,
    RaftElectionEncoding,
    VoteRequestArrives,
    granted,
    responded,
)
from distcheck.checks.proofs.system import Candidate, Evaluator, SymState, Transition
from distcheck.spec.raft import (
    BecomeLeader,
    Config,
    Raft,
    RaftState,
    Receive,
    RequestVote,
    RequestVoteRequest,
    RequestVoteResponse,
    Restart,
    Timeout,
)

# Two servers and terms 1..2: small enough to explore (1,760 reachable states with a
# one-entry log and one message in flight), large enough for every election step.
SMALL = {"max_term": 2}
# The variants the abstraction models differently, at a size where logs do not
# matter to them (no log at all).
NO_LOG = {"max_term": 2, "max_log": 0}
PROOF = ["ElectionRecords", "VotesRecorded", "OneVotePerTerm", "ElectedByQuorum"]


def encoding(variant: str | None = None, /, **params: int) -> RaftElectionEncoding:
    return RaftElectionEncoding(Raft(Config(**params, variant=variant)))


def prove(enc: RaftElectionEncoding, invariant: str | None = None, **options: Any) -> dict[str, Outcome]:
    return {o.name: discharge(o) for o in obligations(enc, enc.candidate(invariant), **options)}


def results(outcomes: dict[str, Outcome]) -> dict[str, str]:
    return {name: o.verdict for name, o in outcomes.items()}


@pytest.mark.parametrize(
    "params",
    [
        {},  # the spec's default: 2 servers, terms 1..3
        {"servers": 3, "max_term": 3},
    ],
)
def test_election_inv_proves_election_safety(params: dict[str, int]) -> None:
    enc = encoding(None, **params)
    assert [c.name for c in enc.candidate(None).conjuncts] == PROOF
    outcomes = prove(enc)
    assert results(outcomes) == {
        "Initiation": PROVED,
        "Consecution": PROVED,
        "Safety(ElectionSafety)": PROVED,
    }


@pytest.mark.parametrize("variant", ["commit_old_term", "no_log_check", "truncate_on_stale"])
def test_log_variants_keep_election_safety(variant: str) -> None:
    # Their mistakes are in the log part, which the abstraction forgets.
    assert set(results(prove(encoding(variant, **SMALL))).values()) == {PROVED}


# ---------------------------------------------------- the abstraction and the spec


# The reference is cross-checked by ``test_prove_raft_json`` (and at the spec's
# default size by test_smt_crosscheck); the variants that change only logs, which
# the abstraction simulates exactly as it does the reference, are kept for -m slow.
@pytest.mark.parametrize(
    ("variant", "params"),
    [
        ("vote_twice", NO_LOG),
        ("forget_vote", NO_LOG),
        pytest.param("commit_old_term", SMALL, marks=pytest.mark.slow),
        pytest.param("no_log_check", SMALL, marks=pytest.mark.slow),
        pytest.param("truncate_on_stale", SMALL, marks=pytest.mark.slow),
    ],
)
def test_the_abstraction_simulates_the_spec(variant: str | None, params: dict[str, int]) -> None:
    enc = encoding(variant, **params)
    states = reachable_states(enc.spec)
    report = cross_check(enc, states)
    assert report.mismatches == ()
    assert report.states == len(states)
    assert report.steps == sum(len([t for _, t in enc.spec.successors(s) if enc.spec.within_bounds(t)]) for s in states)


def test_every_conjunct_holds_on_every_reachable_state() -> None:
    enc = encoding(None, **SMALL)
    s = enc.symbolic()
    conjuncts = [(c.name, Evaluator(c.formula(s), s)) for c in enc.candidate(None).conjuncts]
    states = reachable_states(enc.spec)
    # Exploration keeps to the spec's bounds, as TLC's CONSTRAINT: TLC's count.
    assert len(states) == 1_760 and all(enc.spec.within_bounds(state) for state in states)
    for state in states:
        values = enc.values(state)
        assert [name for name, holds in conjuncts if not holds.holds(values)] == [], state
    assert any(state.elections for state in states), "a leader is elected: the invariant is not vacuous"


class IgnoresTheVariant(RaftElectionEncoding):
    """Models the reference grant rule whatever the spec's variant."""

    def __init__(self, spec: Raft) -> None:
        super().__init__(spec)
        self.variant = None


class RestartKeepsTally(RaftElectionEncoding):
    """Forgets that a restart loses the candidate's tally."""

    def transition(self, action: ElectionAction, s: SymState) -> Transition:
        step = super().transition(action, s)
        if isinstance(action, Restart):
            kept = {responded(action.server, j) for j in self.servers} | {
                granted(action.server, j) for j in self.servers
            }
            return Transition(step.guard, {k: v for k, v in step.updates.items() if k not in kept})
        return step


class FollowersAskForVotes(RaftElectionEncoding):
    """Lets any server send a RequestVote: a z3 step of a spec action the spec does not take."""

    def transition(self, action: ElectionAction, s: SymState) -> Transition:
        step = super().transition(action, s)
        if isinstance(action, RequestVote):
            return Transition(z3.Not(s[responded(action.server, action.peer)]), step.updates)
        return step


NOT_SIMULATED = "spec step the abstraction does not simulate"


@pytest.mark.parametrize(
    ("altered", "variant", "kind", "action"),
    [
        (IgnoresTheVariant, "vote_twice", NOT_SIMULATED, Receive),
        (RestartKeepsTally, None, NOT_SIMULATED, Restart),
        (FollowersAskForVotes, None, "z3 step of a spec action that the spec does not take", RequestVote),
    ],
)
def test_an_altered_abstraction_fails_the_cross_check(
    altered: type[RaftElectionEncoding], variant: str | None, kind: str, action: type
) -> None:
    report = cross_check(altered(Raft(Config(**NO_LOG, variant=variant))), max_mismatches=1)
    assert not report.ok
    [mismatch] = report.mismatches
    assert mismatch.kind == kind
    assert isinstance(mismatch.action, action)


def test_a_witness_has_the_abstraction_it_was_built_from() -> None:
    enc = encoding(None, **SMALL)
    for state in reachable_states(enc.spec)[::50]:
        values = enc.values(state)
        assert enc.values(enc.state(values)) == values


# ------------------------------------------------------------- broken variants


def replay(spec: Raft, actions: Sequence[Any]) -> list[RaftState]:
    """The states of a path of the spec, each step enabled and within bounds."""
    states = [next(iter(spec.init_states()))]
    for action in actions:
        nxt = spec.next_state(states[-1], action)
        assert nxt is not None and spec.within_bounds(nxt), action
        states.append(nxt)
    return states


def vote(term: int, candidate: str, voter: str) -> Receive:
    return Receive(RequestVoteRequest(term, 0, 0, candidate, voter))


def granted_vote(term: int, voter: str, candidate: str) -> Receive:
    return Receive(RequestVoteResponse(term, True, (), voter, candidate))


# s2 grants s1 its vote in term 2, and restarts with the vote in flight.
FORGET_VOTE_PATH = [Timeout("s1"), RequestVote("s1", "s2"), vote(2, "s1", "s2"), vote(2, "s1", "s2"), Restart("s2")]
# s2 votes for itself in term 2, then for s1 as well.
VOTE_TWICE_PATH = [
    Timeout("s1"),
    Timeout("s2"),
    RequestVote("s2", "s2"),
    vote(2, "s2", "s2"),
    granted_vote(2, "s2", "s2"),
    RequestVote("s1", "s2"),
    vote(2, "s1", "s2"),
]


@pytest.mark.parametrize(
    ("variant", "step", "path", "breaks"),
    [
        ("forget_vote", Restart, FORGET_VOTE_PATH, {"VotesRecorded"}),
        ("vote_twice", VoteRequestArrives, VOTE_TWICE_PATH, {"VotesRecorded", "OneVotePerTerm"}),
    ],
)
def test_a_broken_variant_fails_consecution_at_the_step_that_breaks_it(
    variant: str, step: type, path: list[Any], breaks: set[str]
) -> None:
    enc = encoding(variant, **NO_LOG)
    outcomes = prove(enc)
    assert results(outcomes) == {"Initiation": PROVED, "Consecution": FAILED, "Safety(ElectionSafety)": PROVED}
    cex = outcomes["Consecution"].counterexample
    assert cex is not None
    assert isinstance(cex.values["action"], step)
    assert set(cex.data["failing"]) <= breaks and cex.data["failing"]
    assert cex.data["spec_agrees"] is None  # an abstract step: nothing to compare
    assert "counterexample to induction" in cex.text

    # The spec itself takes such a step from a reachable state where all of
    # ElectionInv held, and the spec's ElectionSafety then fails on the way.
    s = enc.symbolic()
    conjuncts = {c.name: Evaluator(c.formula(s), s) for c in enc.candidate(None).conjuncts}
    states = replay(enc.raft, path)
    before, after = enc.values(states[-2]), enc.values(states[-1])
    assert all(holds.holds(before) for holds in conjuncts.values())
    assert {name for name, holds in conjuncts.items() if not holds.holds(after)} == breaks
    abstract = enc.simulate(states[-2], path[-1], states[-1])
    assert isinstance(abstract[0], step) and all(isinstance(a, MessageLost) for a in abstract[1:])


def test_vote_twice_elects_two_leaders_in_the_spec() -> None:
    spec = Raft(Config(**NO_LOG, variant="vote_twice"))
    safety = next(inv for inv in spec.invariants() if inv.name == "ElectionSafety")
    assert not all(safety.holds(state) for state in reachable_states(spec))


def test_election_safety_alone_is_not_inductive() -> None:
    enc = encoding(None, **SMALL)
    abstractions = {enc.reachability_key(state) for state in reachable_states(enc.spec)}
    outcomes = prove(enc, "ElectionSafety", is_reachable=lambda st: enc.reachability_key(st) in abstractions)
    assert results(outcomes)["Consecution"] == FAILED
    cex = outcomes["Consecution"].counterexample
    assert cex is not None and cex.data["failing"] == ["ElectionSafety"]
    assert cex.data["before_reachable"] is False
    assert isinstance(cex.values["action"], BecomeLeader)


@pytest.mark.parametrize("dropped", ["VotesRecorded", "OneVotePerTerm", "ElectedByQuorum"])
def test_every_conjunct_of_the_argument_is_needed(dropped: str) -> None:
    # ElectionRecords is not part of the argument: it keeps counterexamples printable.
    enc = encoding(None, **SMALL)
    full = enc.candidate(None)
    rest = Candidate(f"without {dropped}", "", tuple(c for c in full.conjuncts if c.name != dropped))
    outcomes = {o.name: discharge(o) for o in obligations(enc, rest)}
    assert FAILED in results(outcomes).values(), f"{dropped} is redundant"


# ------------------------------------------------------------------------- CLI


def test_prove_raft_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "raft", "-p", "max_term=2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["spec"] == "raft" and report["invariant"] == "ElectionInv" and report["verdict"] == "ok"
    names = [o["name"] for o in report["obligations"]]
    assert names == ["CrossCheck", "Initiation", "Consecution", "Safety(ElectionSafety)"]
    assert all(o["verdict"] == "proved" for o in report["obligations"])
    assert "1,760 reachable states" in report["obligations"][0]["detail"]
    assert "simulates" in report["obligations"][0]["statement"]


def test_prove_raft_forget_vote_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "raft", "--variant", "forget_vote", "-p", "servers=2", "--no-cross-check"])
    out = capsys.readouterr().out
    assert code == 1
    assert "Consecution               failed" in out
    assert "Restart(s" in out and "VotesRecorded" in out
