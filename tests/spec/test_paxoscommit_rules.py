"""Paxos Commit, rule by rule: for every rule a hand-built state where its guard is
false and one where it is true (so altering any guard fails here, including guards
no variant covers), for every clause of every invariant a state that breaks just
that clause, and every reachability property reached at the default size."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.network import MessageSet
from distcheck.spec.paxoscommit import (
    NONE,
    AcceptorState,
    Chosen,
    Config,
    LeaderAbort,
    LeaderCommit,
    Message,
    PaxosCommit,
    PCAction,
    PCState,
    Phase1a,
    Phase1aMsg,
    Phase1b,
    Phase1bMsg,
    Phase2a,
    Phase2aMsg,
    Phase2b,
    Phase2bMsg,
)
from distcheck.spec.twophase import (
    ABORTED,
    COMMITTED,
    PREPARED,
    WORKING,
    Abort,
    Commit,
    RMChooseToAbort,
    RMPrepare,
    RMRcvAbortMsg,
    RMRcvCommitMsg,
)
from distcheck.spec.values import FrozenMap

SPEC = PaxosCommit(Config(rms=2, acceptors=3, max_ballot=1))
BLANK = AcceptorState(0, -1, NONE)
A12 = frozenset({"a1", "a2"})


def state(
    rms: Mapping[str, str] | None = None,
    accs: Mapping[tuple[str, str], AcceptorState] | None = None,
    msgs: Iterable[Message] = (),
    spec: PaxosCommit = SPEC,
) -> PCState:
    """A state of ``spec``: every RM working and every acceptor blank, except as given."""
    rm_state = {rm: WORKING for rm in spec.rms} | dict(rms or {})
    a_state = {(ins, acc): BLANK for ins in spec.rms for acc in spec.acceptors} | dict(accs or {})
    return PCState(FrozenMap(rm_state), FrozenMap(a_state), MessageSet(frozenset(msgs)))


def step(s: PCState, a: PCAction, spec: PaxosCommit = SPEC) -> PCState | None:
    """The state after ``a``, or None; and the explorer's enumeration agrees."""
    nxt = spec.next_state(s, a)
    assert (a in spec.actions(s)) == (nxt is not None), a
    if nxt is not None:
        assert (a, nxt) in spec.successors(s)
    return nxt


def votes(ins: str, bal: int, val: str, *accs: str) -> list[Message]:
    return [Phase2bMsg(acc, ins, bal, val) for acc in accs]


# -------------------------------------------------------------------------- the RMs


@pytest.mark.parametrize("record,vote", [(RMPrepare, PREPARED), (RMChooseToAbort, ABORTED)])
def test_only_a_working_rm_votes_in_ballot_0(record: type[RMPrepare | RMChooseToAbort], vote: str) -> None:
    after = step(state(), record("r1"))
    assert after == state({"r1": vote}, msgs=[Phase2aMsg("r1", 0, vote)])
    for status in (PREPARED, COMMITTED, ABORTED):
        assert step(state({"r1": status}), record("r1")) is None


@pytest.mark.parametrize(
    "record,decision,other,outcome",
    [(RMRcvCommitMsg, Commit(), Abort(), COMMITTED), (RMRcvAbortMsg, Abort(), Commit(), ABORTED)],
)
def test_an_rm_obeys_only_the_decision_that_was_sent(
    record: type[RMRcvCommitMsg | RMRcvAbortMsg], decision: Message, other: Message, outcome: str
) -> None:
    assert step(state(), record("r1")) is None
    assert step(state(msgs=[other]), record("r1")) is None
    assert step(state({"r1": PREPARED}, msgs=[decision]), record("r1")) == state({"r1": outcome}, msgs=[decision])


# ------------------------------------------------------------------------ the leader


def test_phase1a_starts_any_ballot_above_0_of_any_instance() -> None:
    assert step(state(), Phase1a(1, "r2")) == state(msgs=[Phase1aMsg("r2", 1)])
    for outside in (Phase1a(0, "r1"), Phase1a(2, "r1"), Phase1a(1, "r9")):  # ballot 0 is the RM's own
        assert step(state(), outside) is None


def reports(ins: str, bal: int, *accs_and_votes: tuple[str, int, str]) -> list[Message]:
    return [Phase1bMsg(ins, bal, vbal, val, acc) for acc, vbal, val in accs_and_votes]


def test_phase2a_needs_a_1b_message_from_every_acceptor_of_the_quorum() -> None:
    one = reports("r1", 1, ("a1", -1, NONE), ("a3", -1, NONE))
    assert step(state(msgs=one), Phase2a(1, "r1", A12)) is None
    assert step(state(msgs=one), Phase2a(1, "r1", frozenset({"a1", "a3"}))) is not None
    # a 1b message for another instance does not count
    other_instance = reports("r1", 1, ("a1", -1, NONE)) + reports("r2", 1, ("a2", -1, NONE))
    assert step(state(msgs=other_instance), Phase2a(1, "r1", A12)) is None


def test_phase2a_proposes_aborted_when_no_reported_vote_else_the_highest_vote() -> None:
    none_voted = state(msgs=reports("r1", 1, ("a1", -1, NONE), ("a2", -1, NONE)))
    after = step(none_voted, Phase2a(1, "r1", A12))
    assert after is not None and Phase2aMsg("r1", 1, ABORTED) in after.msgs
    one_voted = state(msgs=reports("r1", 1, ("a1", -1, NONE), ("a2", 0, PREPARED)))
    after = step(one_voted, Phase2a(1, "r1", A12))
    assert after is not None and Phase2aMsg("r1", 1, PREPARED) in after.msgs
    # With ballots 0..2: a vote in ballot 1 outranks one in ballot 0.
    spec = PaxosCommit(Config(rms=1, acceptors=3, max_ballot=2))
    mixed = state(msgs=reports("r1", 2, ("a1", 0, PREPARED), ("a2", 1, ABORTED)), spec=spec)
    after = step(mixed, Phase2a(2, "r1", A12), spec)
    assert after is not None and Phase2aMsg("r1", 2, ABORTED) in after.msgs


def test_phase2a_proposes_once_per_ballot() -> None:
    answered = reports("r1", 1, ("a1", -1, NONE), ("a2", -1, NONE), ("a3", -1, NONE))
    proposed = state(msgs=[*answered, Phase2aMsg("r1", 1, ABORTED)])
    assert step(proposed, Phase2a(1, "r1", A12)) is None
    assert step(proposed, Phase2a(1, "r1", frozenset({"a2", "a3"}))) is None


def test_phase2a_takes_only_a_quorum() -> None:
    answered = state(msgs=reports("r1", 1, ("a1", -1, NONE), ("a2", -1, NONE), ("a3", -1, NONE)))
    assert step(answered, Phase2a(1, "r1", frozenset({"a1"}))) is None
    assert step(answered, Phase2a(1, "r1", frozenset({"a1", "a2", "a3"}))) is None  # minimal quorums only


def test_leader_commits_only_with_every_instance_chosen_prepared() -> None:
    both = state(msgs=votes("r1", 0, PREPARED, "a1", "a2") + votes("r2", 1, PREPARED, "a2", "a3"))
    evidence = (Chosen("r1", 0, A12), Chosen("r2", 1, frozenset({"a2", "a3"})))
    assert step(both, LeaderCommit(evidence)) == state(msgs=[*both.msgs.sent, Commit()])
    assert step(both, LeaderCommit(evidence[:1])) is None  # r2 has no evidence
    assert step(both, LeaderCommit((evidence[1], evidence[0]))) is None  # one per RM, in RM order
    assert step(both, LeaderCommit((evidence[0], Chosen("r2", 0, A12)))) is None  # r2 chose in ballot 1
    short = state(msgs=votes("r1", 0, PREPARED, "a1", "a2") + votes("r2", 1, PREPARED, "a2"))
    assert step(short, LeaderCommit(evidence)) is None  # a3 did not vote for r2
    aborted = state(msgs=votes("r1", 0, PREPARED, "a1", "a2") + votes("r2", 1, ABORTED, "a2", "a3"))
    assert step(aborted, LeaderCommit(evidence)) is None


def test_leader_aborts_only_with_some_instance_chosen_aborted() -> None:
    chosen = state(msgs=votes("r2", 0, ABORTED, "a1", "a2"))
    assert step(chosen, LeaderAbort(Chosen("r2", 0, A12))) == state(msgs=[*chosen.msgs.sent, Abort()])
    assert step(chosen, LeaderAbort(Chosen("r2", 1, A12))) is None
    assert step(chosen, LeaderAbort(Chosen("r2", 0, frozenset({"a2", "a3"})))) is None
    assert step(state(msgs=votes("r2", 0, ABORTED, "a1")), LeaderAbort(Chosen("r2", 0, A12))) is None
    assert step(state(msgs=votes("r2", 0, PREPARED, "a1", "a2")), LeaderAbort(Chosen("r2", 0, A12))) is None


# ------------------------------------------------------------------- the acceptors


def test_phase1b_joins_only_a_higher_ballot_and_reports_the_last_vote() -> None:
    m = Phase1aMsg("r1", 1)
    voted = AcceptorState(0, 0, PREPARED)
    after = step(state(accs={("r1", "a1"): voted}, msgs=[m]), Phase1b("a1", m))
    assert after == state(
        accs={("r1", "a1"): AcceptorState(1, 0, PREPARED)}, msgs=[m, Phase1bMsg("r1", 1, 0, PREPARED, "a1")]
    )
    assert step(state(accs={("r1", "a1"): AcceptorState(1, -1, NONE)}, msgs=[m]), Phase1b("a1", m)) is None
    assert step(state(), Phase1b("a1", m)) is None  # the 1a message was never sent


def test_phase2b_votes_unless_the_acceptor_joined_a_higher_ballot() -> None:
    m0, m1 = Phase2aMsg("r1", 0, PREPARED), Phase2aMsg("r1", 1, ABORTED)
    joined_1 = AcceptorState(1, -1, NONE)
    after = step(state(accs={("r1", "a2"): joined_1}, msgs=[m1]), Phase2b("a2", m1))  # the same ballot
    assert after == state(accs={("r1", "a2"): AcceptorState(1, 1, ABORTED)}, msgs=[m1, *votes("r1", 1, ABORTED, "a2")])
    assert step(state(msgs=[m1]), Phase2b("a2", m1)) is not None  # a lower one
    assert step(state(accs={("r1", "a2"): joined_1}, msgs=[m0]), Phase2b("a2", m0)) is None
    assert step(state(), Phase2b("a2", m0)) is None  # the 2a message was never sent


# -------------------------------------------------------------------- invariants


def broken(s: PCState) -> list[str]:
    return [inv.name for inv in SPEC.invariants() if not inv.holds(s)]


def without(
    mapping: FrozenMap[tuple[str, str], AcceptorState], key: tuple[str, str]
) -> dict[tuple[str, str], AcceptorState]:
    return {k: v for k, v in mapping.items() if k != key}


def test_a_well_typed_consistent_state_breaks_nothing() -> None:
    assert broken(state({"r1": COMMITTED, "r2": COMMITTED}, {("r1", "a1"): AcceptorState(1, 1, PREPARED)})) == []


@pytest.mark.parametrize(
    "bad",
    [
        PCState(FrozenMap({"r1": WORKING}), state().a_state, MessageSet()),  # an RM missing
        state({"r1": "confused"}),  # an RM state that is none of the four
        PCState(
            state().rm_state, FrozenMap(without(state().a_state, ("r2", "a3"))), MessageSet()
        ),  # an acceptor missing
        state(accs={("r1", "a1"): AcceptorState(2, -1, NONE)}),  # joined a ballot that does not exist
        state(accs={("r1", "a1"): AcceptorState(0, -1, PREPARED)}),  # a value without a ballot
        state(accs={("r1", "a1"): AcceptorState(1, 0, NONE)}),  # a ballot without a value
        state(accs={("r1", "a1"): AcceptorState(0, 1, PREPARED)}),  # voted above the ballot it joined
    ],
)
def test_each_clause_of_type_ok_is_checked(bad: PCState) -> None:
    assert broken(bad) == ["TypeOK"]


def test_tc_consistent_catches_a_commit_beside_an_abort() -> None:
    assert broken(state({"r1": COMMITTED, "r2": ABORTED})) == ["TCConsistent"]
    assert broken(state({"r1": COMMITTED, "r2": PREPARED})) == []


# ------------------------------------------------------------------ reachability


def test_every_reachability_property_is_reached_at_the_default_size() -> None:
    spec = PaxosCommit()
    result = explore(spec)
    assert result.ok, result.violation
    assert set(result.reached) == {p.name for p in spec.reachable()} == {"AllCommitted", "AllAborted", "LeaderTookOver"}
