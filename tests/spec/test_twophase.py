"""TwoPhase and TCommit: parity with TLC's published figures, symmetry, refinement,
and the known counterexamples of the variants pinned as action lists."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest

from distcheck.checks.search.explore import check_refinement_of, explore
from distcheck.spec.network import MessageSet
from distcheck.spec.twophase import (
    Abort,
    Commit,
    Config,
    DecideAbort,
    DecideCommit,
    Prepare,
    Prepared,
    RMChooseToAbort,
    RMPrepare,
    RMRcvAbortMsg,
    RMRcvCommitMsg,
    TCConfig,
    TCommit,
    TCState,
    TMAbort,
    TMCommit,
    TMRcvPrepared,
    TPState,
    TwoPhase,
)
from distcheck.spec.values import FrozenMap, canonical_text
from tests.spec.steps import broken, replay


@pytest.mark.parametrize(
    "rms,symmetry,distinct,generated,depth",
    [
        (3, False, 288, 1146, 11),  # TLC: 288 distinct, 1,146 generated, depth 11
        (5, False, 8832, None, None),  # TLC and Stateright: 8,832
        (5, True, 314, None, None),  # TLC under SYMMETRY Permutations(RM): 314 orbits
    ],
)
def test_twophase_parity_with_tlc(
    rms: int, symmetry: bool, distinct: int, generated: int | None, depth: int | None
) -> None:
    result = explore(TwoPhase(Config(rms=rms)), symmetry=symmetry)
    assert result.ok
    assert result.stats.distinct_states == distinct
    if generated is not None:
        assert result.stats.generated_states == generated
    if depth is not None:
        assert result.stats.depth == depth


def test_tcommit_parity() -> None:
    result = explore(TCommit(TCConfig(rms=3)))
    assert result.ok and result.stats.distinct_states == 34


def rename(state: TPState, perm: dict[str, str]) -> TPState:
    """The same state with RMs renamed (a symmetry of TwoPhase)."""
    msgs = frozenset(Prepared(perm[m.rm]) if isinstance(m, Prepared) else m for m in state.msgs.sent)
    return TPState(
        FrozenMap({perm[rm]: v for rm, v in state.rm_state.items()}),
        state.tm_state,
        frozenset(perm[rm] for rm in state.tm_prepared),
        MessageSet(msgs),
    )


def test_canonical_is_exact_orbit_representative() -> None:
    """canonical() agrees with the brute-force definition of an orbit: two states
    get the same representative iff some renaming of RMs maps one to the other."""
    spec = TwoPhase(Config(rms=4))
    states: set[TPState] = set()
    frontier = list(spec.init_states())
    while frontier:
        s = frontier.pop()
        if s in states:
            continue
        states.add(s)
        frontier.extend(t for _, t in spec.successors(s))
    perms = [dict(zip(spec.rms, p, strict=True)) for p in itertools.permutations(spec.rms)]

    def orbit_key(s: TPState) -> str:
        return min(canonical_text(rename(s, p)) for p in perms)

    by_orbit: dict[str, set[TPState]] = {}
    for s in states:
        by_orbit.setdefault(orbit_key(s), set()).add(spec.canonical(s))
    assert all(len(reps) == 1 for reps in by_orbit.values())  # one representative per orbit
    assert len({spec.canonical(s) for s in states}) == len(by_orbit)  # and distinct across orbits


def test_twophase_refines_tcommit() -> None:
    assert check_refinement_of(TwoPhase(Config(rms=3))).ok


def test_refinement_check_can_fail() -> None:
    """A variant whose steps TCommit cannot explain is rejected by the refinement check."""
    result = check_refinement_of(TwoPhase(Config(rms=3, variant="commit_early")))
    assert result.violation is not None and result.violation.kind == "refinement"


def test_commit_early_known_counterexample() -> None:
    """The TM commits with nobody prepared; r1 aborts; r2 commits."""
    spec = TwoPhase(Config(rms=2, variant="commit_early"))
    state = replay(spec, [TMCommit(), RMChooseToAbort("r1"), RMRcvCommitMsg("r2")])
    assert broken(spec, state) == ["TCConsistent"]
    # The same actions are not a behaviour of the correct spec: TMCommit is guarded.
    assert TwoPhase(Config(rms=2)).next_state(next(iter(spec.init_states())), TMCommit()) is None


def test_abort_after_prepare_known_counterexample() -> None:
    spec = TwoPhase(Config(rms=2, variant="abort_after_prepare"))
    plan = [RMPrepare("r1"), RMPrepare("r2"), TMRcvPrepared("r1"), TMRcvPrepared("r2"), TMCommit()]
    state = replay(spec, [*plan, RMChooseToAbort("r1"), RMRcvCommitMsg("r2")])
    assert broken(spec, state) == ["TCConsistent"]


def test_unknown_actions_are_not_enabled() -> None:
    spec = TwoPhase(Config(rms=2))
    init = next(iter(spec.init_states()))
    assert spec.next_state(init, RMPrepare("r9")) is None
    assert spec.next_state(init, TMRcvPrepared("r1")) is None  # no Prepared message yet


def test_type_invariant_detects_ill_typed_states() -> None:
    spec = TwoPhase(Config(rms=2))
    init = next(iter(spec.init_states()))
    type_ok = next(inv for inv in spec.invariants() if inv.name == "TypeOK")
    assert type_ok.holds(init)
    assert not type_ok.holds(attrs.evolve(init, tm_state="confused"))
    assert not type_ok.holds(attrs.evolve(init, tm_prepared=frozenset({"r7"})))


# ------------------------------------------------------------------------------
# Each guard, each invariant clause and each reachability property, on hand-built
# states: a change to any one of them makes one of these fail.

RMS2 = Config(rms=2)


def tp(rm_state: dict[str, str], tm_state: str = "init", prepared: set[str] | None = None, msgs: Any = ()) -> TPState:
    return TPState(FrozenMap(rm_state), tm_state, frozenset(prepared or ()), MessageSet(frozenset(msgs)))


W, P, C, A = "working", "prepared", "committed", "aborted"


@pytest.mark.parametrize(
    "action,enabled,disabled",
    [
        # TMRcvPrepared(rm): the TM is undecided and rm's Prepared was sent.
        (
            TMRcvPrepared("r1"),
            tp({"r1": P, "r2": W}, msgs=[Prepared("r1")]),
            tp({"r1": P, "r2": W}, "done", msgs=[Prepared("r1")]),
        ),
        (
            TMRcvPrepared("r1"),
            tp({"r1": P, "r2": W}, msgs=[Prepared("r1")]),
            tp({"r1": W, "r2": P}, msgs=[Prepared("r2")]),
        ),
        # TMCommit: undecided, and every RM's Prepared recorded.
        (TMCommit(), tp({"r1": P, "r2": P}, prepared={"r1", "r2"}), tp({"r1": P, "r2": P}, prepared={"r1"})),
        (TMCommit(), tp({"r1": P, "r2": P}, prepared={"r1", "r2"}), tp({"r1": P, "r2": P}, "done", {"r1", "r2"})),
        # TMAbort: undecided.
        (TMAbort(), tp({"r1": P, "r2": P}, prepared={"r1", "r2"}), tp({"r1": W, "r2": W}, "done")),
        # RMPrepare / RMChooseToAbort: a working RM.
        (RMPrepare("r2"), tp({"r1": P, "r2": W}), tp({"r1": W, "r2": P})),
        (RMChooseToAbort("r2"), tp({"r1": P, "r2": W}), tp({"r1": W, "r2": P})),
        # RMRcvCommitMsg / RMRcvAbortMsg: the decision was sent.
        (
            RMRcvCommitMsg("r1"),
            tp({"r1": P, "r2": P}, "done", msgs=[Commit()]),
            tp({"r1": P, "r2": P}, "done", msgs=[Abort()]),
        ),
        (
            RMRcvAbortMsg("r1"),
            tp({"r1": P, "r2": P}, "done", msgs=[Abort()]),
            tp({"r1": P, "r2": P}, "done", msgs=[Commit()]),
        ),
    ],
    ids=lambda v: str(v) if not isinstance(v, TPState) else "",
)
def test_each_twophase_guard(action: Any, enabled: TPState, disabled: TPState) -> None:
    spec = TwoPhase(RMS2)
    assert spec.next_state(enabled, action) is not None and action in spec.actions(enabled)
    assert spec.next_state(disabled, action) is None and action not in spec.actions(disabled)


def test_each_twophase_effect() -> None:
    spec = TwoPhase(RMS2)
    s = tp({"r1": W, "r2": W})
    assert spec.next_state(s, RMPrepare("r1")) == tp({"r1": P, "r2": W}, msgs=[Prepared("r1")])
    assert spec.next_state(s, RMChooseToAbort("r1")) == tp({"r1": A, "r2": W})
    assert spec.next_state(s, TMAbort()) == tp({"r1": W, "r2": W}, "done", msgs=[Abort()])
    s = tp({"r1": P, "r2": P}, prepared={"r1"}, msgs=[Prepared("r1"), Prepared("r2")])
    assert spec.next_state(s, TMRcvPrepared("r2")) == attrs.evolve(s, tm_prepared=frozenset({"r1", "r2"}))
    s = attrs.evolve(s, tm_prepared=frozenset({"r1", "r2"}))
    assert spec.next_state(s, TMCommit()) == attrs.evolve(s, tm_state="done", msgs=s.msgs.send(Commit()))
    s = tp({"r1": P, "r2": C}, "done", {"r1", "r2"}, [Commit()])
    assert spec.next_state(s, RMRcvCommitMsg("r1")) == attrs.evolve(s, rm_state=FrozenMap({"r1": C, "r2": C}))
    s = tp({"r1": P, "r2": W}, "done", msgs=[Abort()])
    assert spec.next_state(s, RMRcvAbortMsg("r1")) == attrs.evolve(s, rm_state=FrozenMap({"r1": A, "r2": W}))


@pytest.mark.parametrize(
    "state",
    [
        tp({"r1": W}),  # an RM missing
        tp({"r1": W, "r2": W, "r3": W}),  # an RM too many
        tp({"r1": W, "r2": "confused"}),  # a state no RM has
        tp({"r1": W, "r2": W}, "confused"),  # a state no TM has
        tp({"r1": W, "r2": W}, prepared={"r9"}),  # an unknown RM recorded as prepared
        tp({"r1": W, "r2": W}, msgs=[Prepared("r9")]),  # a Prepared from an unknown RM
        tp({"r1": W, "r2": W}, msgs=["hello"]),  # a message that is no message
    ],
)
def test_each_clause_of_twophase_type_ok(state: TPState) -> None:
    spec = TwoPhase(RMS2)
    assert broken(spec, state) == ["TypeOK"]


def test_tc_consistent_and_the_reachability_properties_on_hand_built_states() -> None:
    spec = TwoPhase(RMS2)
    assert broken(spec, tp({"r1": C, "r2": A}, "done", msgs=[Commit()])) == ["TCConsistent"]
    assert broken(spec, tp({"r1": C, "r2": P}, "done", msgs=[Commit()])) == []
    assert broken(spec, tp({"r1": A, "r2": W})) == []
    props = {p.name: p.holds for p in spec.reachable()}
    assert props["AllCommitted"](tp({"r1": C, "r2": C})) and not props["AllCommitted"](tp({"r1": C, "r2": P}))
    assert props["AllAborted"](tp({"r1": A, "r2": A})) and not props["AllAborted"](tp({"r1": A, "r2": W}))
    assert props["CommitDecided"](tp({"r1": P, "r2": P}, msgs=[Commit()]))
    assert not props["CommitDecided"](tp({"r1": P, "r2": P}, "done", msgs=[Abort()]))
    assert set(explore(spec).reached) == {"AllCommitted", "AllAborted", "CommitDecided"}


def tc(**rm_state: str) -> TCState:
    return TCState(FrozenMap(rm_state))


@pytest.mark.parametrize(
    "action,enabled,disabled",
    [
        (Prepare("r1"), tc(r1=W, r2=W), tc(r1=P, r2=W)),
        (DecideCommit("r1"), tc(r1=P, r2=C), tc(r1=P, r2=W)),  # every RM prepared or committed
        (DecideCommit("r1"), tc(r1=P, r2=P), tc(r1=W, r2=P)),  # the RM itself prepared
        (DecideAbort("r1"), tc(r1=P, r2=P), tc(r1=P, r2=C)),  # nobody committed
        (DecideAbort("r1"), tc(r1=W, r2=A), tc(r1=A, r2=W)),  # the RM working or prepared
    ],
    ids=str,
)
def test_each_tcommit_guard(action: Any, enabled: TCState, disabled: TCState) -> None:
    spec = TCommit(TCConfig(rms=2))
    assert spec.next_state(enabled, action) is not None
    assert spec.next_state(disabled, action) is None


def test_tcommit_invariants_and_reachability_on_hand_built_states() -> None:
    spec = TCommit(TCConfig(rms=2))

    def failing(s: TCState) -> list[str]:
        return [inv.name for inv in spec.invariants() if not inv.holds(s)]

    assert failing(tc(r1=C, r2=A)) == ["TCConsistent"]
    assert failing(tc(r1=W)) == ["TypeOK"]
    assert failing(tc(r1=W, r2="confused")) == ["TypeOK"]
    assert failing(tc(r1=C, r2=C)) == []
    props = {p.name: p.holds for p in spec.reachable()}
    assert props["AllCommitted"](tc(r1=C, r2=C)) and not props["AllCommitted"](tc(r1=C, r2=P))
    assert props["AllAborted"](tc(r1=A, r2=A)) and not props["AllAborted"](tc(r1=W, r2=A))
