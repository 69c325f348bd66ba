"""TwoPhase and TCommit: parity with TLC's published figures, symmetry, refinement,
and the known counterexamples of the variants pinned as action lists."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest

from distcheck.checks.search.explore import check_refinement_of, explore
from distcheck.spec.network import MessageSet
from distcheck.spec.values import FrozenMap, canonical_text
from distcheck.spec.twophase import (
    Config,
    Prepared,
    RMChooseToAbort,
    RMPrepare,
    RMRcvCommitMsg,
    TCConfig,
    TCommit,
    TMCommit,
    TMRcvPrepared,
    TPState,
    TwoPhase,
)


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


def replay(spec: TwoPhase, actions: list[Any]) -> TPState:
    state = next(iter(spec.init_states()))
    for a in actions:
        nxt = spec.next_state(state, a)
        assert nxt is not None, f"{a} is not enabled in {state}"
        state = nxt
    return state


def broken(state: TPState, spec: TwoPhase) -> list[str]:
    return [inv.name for inv in spec.invariants() if not inv.holds(state)]


def test_commit_early_known_counterexample() -> None:
    """The TM commits with nobody prepared; r1 aborts; r2 commits."""
    spec = TwoPhase(Config(rms=2, variant="commit_early"))
    state = replay(spec, [TMCommit(), RMChooseToAbort("r1"), RMRcvCommitMsg("r2")])
    assert broken(state, spec) == ["TCConsistent"]
    # The same actions are not a behaviour of the correct spec: TMCommit is guarded.
    assert TwoPhase(Config(rms=2)).next_state(next(iter(spec.init_states())), TMCommit()) is None


def test_abort_after_prepare_known_counterexample() -> None:
    spec = TwoPhase(Config(rms=2, variant="abort_after_prepare"))
    plan = [RMPrepare("r1"), RMPrepare("r2"), TMRcvPrepared("r1"), TMRcvPrepared("r2"), TMCommit()]
    state = replay(spec, [*plan, RMChooseToAbort("r1"), RMRcvCommitMsg("r2")])
    assert broken(state, spec) == ["TCConsistent"]


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
