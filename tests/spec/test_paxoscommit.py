"""Paxos Commit: parity with TLC, symmetry, refinement of TCommit, the variants.

The small instances' figures were produced by TLC on benchmarks/tla/PaxosCommit.tla
(the same model); the full instance's are the published ones (marked slow).
"""

from __future__ import annotations

import itertools
import json

import pytest

from distcheck.checks.search.explore import check_refinement_of, explore
from distcheck.spec.codec import to_json
from distcheck.spec.network import MessageSet
from distcheck.spec.paxoscommit import (
    Chosen,
    Config,
    LeaderAbort,
    LeaderCommit,
    PaxosCommit,
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
from distcheck.spec.twophase import RMPrepare, RMRcvAbortMsg, RMRcvCommitMsg
from distcheck.spec.values import FrozenMap, canonical_text


@pytest.mark.parametrize(
    "rms,acceptors,max_ballot,symmetry,distinct,generated,depth",
    [
        (1, 3, 1, False, 1461, 9936, 15),  # TLC on the same constants
        (2, 1, 1, False, 1425, 9961, 16),
        (2, 2, 1, False, 10821, 85671, 22),
        (1, 3, 1, True, 376, 2605, 15),  # TLC with SYMMETRY Permutations(Acceptor)
        (2, 2, 1, True, 6123, 49151, 22),
    ],
)
def test_parity_with_tlc(
    rms: int, acceptors: int, max_ballot: int, symmetry: bool, distinct: int, generated: int, depth: int
) -> None:
    result = explore(PaxosCommit(Config(rms=rms, acceptors=acceptors, max_ballot=max_ballot)), symmetry=symmetry)
    assert result.ok, result.violation
    assert (result.stats.distinct_states, result.stats.generated_states, result.stats.depth) == (
        distinct,
        generated,
        depth,
    )


@pytest.mark.slow
def test_published_parity_two_rms_three_acceptors() -> None:
    """Gray and Lamport's model: 1,321,761 distinct, 16,959,159 generated, depth 28."""
    result = explore(PaxosCommit(Config(rms=2, acceptors=3, max_ballot=1)))
    assert result.ok
    assert (result.stats.distinct_states, result.stats.generated_states, result.stats.depth) == (
        1321761,
        16959159,
        28,
    )


@pytest.mark.slow
def test_published_parity_under_acceptor_symmetry() -> None:
    result = explore(PaxosCommit(Config(rms=2, acceptors=3, max_ballot=1)), symmetry=True)
    assert result.ok and result.stats.distinct_states == 238995


def test_refines_tcommit() -> None:
    assert check_refinement_of(PaxosCommit(Config(rms=2, acceptors=1, max_ballot=1))).ok


def test_variant_breaks_refinement_too() -> None:
    result = check_refinement_of(PaxosCommit(Config(rms=2, acceptors=1, max_ballot=0, variant="commit_without_all")))
    assert result.violation is not None and result.violation.kind == "refinement"


def test_canonical_is_exact_orbit_representative() -> None:
    spec = PaxosCommit(Config(rms=1, acceptors=3, max_ballot=1))
    states: set[PCState] = set()
    frontier = list(spec.init_states())
    while frontier:
        s = frontier.pop()
        if s not in states:
            states.add(s)
            frontier.extend(t for _, t in spec.successors(s))
    perms = [dict(zip(spec.acceptors, p, strict=True)) for p in itertools.permutations(spec.acceptors)]
    orbits: dict[str, set[PCState]] = {}
    for s in states:
        key = min(canonical_text(spec._rename(s, p)) for p in perms)
        orbits.setdefault(key, set()).add(spec.canonical(s))
    assert all(len(reps) == 1 for reps in orbits.values())
    assert len(orbits) == 376


def replay(spec: PaxosCommit, actions: list[object]) -> PCState:
    state = next(iter(spec.init_states()))
    for a in actions:
        nxt = spec.next_state(state, a)  # type: ignore[arg-type]
        assert nxt is not None, f"{a} is not enabled"
        state = nxt
    return state


def test_forget_vote_known_counterexample() -> None:
    """r1 is chosen prepared in ballot 0; a new leader's phase 1 hears no vote
    (the acceptor forgot it) and gets "aborted" chosen in ballot 1: both decisions
    go out and the RMs disagree.  The same steps fail in the correct spec, where
    the 1b message reports the vote and phase 2a must propose "prepared"."""
    broken = PaxosCommit(Config(rms=2, acceptors=1, max_ballot=1, variant="forget_vote"))
    a1 = frozenset({"a1"})
    steps: list[object] = [
        RMPrepare("r1"),
        RMPrepare("r2"),
        Phase2b("a1", Phase2aMsg("r1", 0, "prepared")),
        Phase2b("a1", Phase2aMsg("r2", 0, "prepared")),
        LeaderCommit((Chosen("r1", 0, a1), Chosen("r2", 0, a1))),
        Phase1a(1, "r1"),
        Phase1b("a1", Phase1aMsg("r1", 1)),
        Phase2a(1, "r1", a1),
        Phase2b("a1", Phase2aMsg("r1", 1, "aborted")),
        LeaderAbort(Chosen("r1", 1, a1)),
        RMRcvCommitMsg("r1"),
        RMRcvAbortMsg("r2"),
    ]
    state = replay(broken, steps)
    assert [inv.name for inv in broken.invariants() if not inv.holds(state)] == ["TCConsistent"]
    correct = PaxosCommit(Config(rms=2, acceptors=1, max_ballot=1))
    before_2a = replay(correct, steps[:7])
    assert Phase1bMsg("r1", 1, 0, "prepared", "a1") in before_2a.msgs
    after_2a = correct.next_state(before_2a, Phase2a(1, "r1", a1))
    assert after_2a is not None and Phase2aMsg("r1", 1, "prepared") in after_2a.msgs


def test_commit_needs_evidence_for_every_rm() -> None:
    spec = PaxosCommit(Config(rms=2, acceptors=1, max_ballot=0))
    state = replay(spec, [RMPrepare("r1"), Phase2b("a1", Phase2aMsg("r1", 0, "prepared"))])
    only_r1 = LeaderCommit((Chosen("r1", 0, frozenset({"a1"})),))
    assert spec.next_state(state, only_r1) is None
    broken = PaxosCommit(Config(rms=2, acceptors=1, max_ballot=0, variant="commit_without_all"))
    assert broken.next_state(state, only_r1) is not None


def test_minority_quorum_lets_two_values_be_chosen() -> None:
    result = explore(PaxosCommit(Config(rms=2, acceptors=2, max_ballot=1, variant="minority_quorum")))
    assert result.violation is not None and result.violation.name == "TCConsistent"
    assert explore(PaxosCommit(Config(rms=2, acceptors=2, max_ballot=1))).ok


def test_evidence_round_trips_through_json() -> None:
    spec = PaxosCommit(Config(rms=2, acceptors=3))
    action = LeaderCommit((Chosen("r1", 0, frozenset({"a1", "a3"})), Chosen("r2", 1, frozenset({"a2", "a3"}))))
    assert spec.action_from_json(json.loads(json.dumps(to_json(action)))) == action
    assert str(action) == "LeaderCommit(⟨r1@b0 by {a1, a3}, r2@b1 by {a2, a3}⟩)"


def test_type_invariant_rejects_a_vote_above_the_promise() -> None:
    spec = PaxosCommit(Config(rms=1, acceptors=1, max_ballot=1))
    init = next(iter(spec.init_states()))
    type_ok = next(inv for inv in spec.invariants() if inv.name == "TypeOK")
    from distcheck.spec.paxoscommit import AcceptorState

    bad = PCState(init.rm_state, FrozenMap({("r1", "a1"): AcceptorState(0, 1, "prepared")}), MessageSet())
    assert type_ok.holds(init) and not type_ok.holds(bad)
    assert Phase2bMsg("a1", "r1", 0, "prepared") not in init.msgs
