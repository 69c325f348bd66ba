"""The quorum lemmas: majorities intersect; BFT quorums of N − f share f + 1 nodes
when N = 3f + 1, and z3 finds the counterexample when N = 3f.  Every counterexample
is checked in plain Python, set by set."""

from __future__ import annotations

from typing import Any

import pytest

from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.quorums import check_params, obligations


def run(**params: int) -> dict[str, Outcome]:
    return {o.name: discharge(o) for o in obligations(check_params(params))}


def two_quorums(data: dict[str, Any]) -> tuple[set[str], set[str]]:
    q1, q2 = set(data["quorum_1"]), set(data["quorum_2"])
    assert set(data["common"]) == q1 & q2
    return q1, q2


@pytest.mark.parametrize("f", [1, 2, 3])
def test_bft_quorums_of_3f_plus_1_nodes_share_f_plus_1(f: int) -> None:
    outcomes = run(n=3 * f + 1, f=f)
    assert {name: o.verdict for name, o in outcomes.items()} == {
        "MajoritiesIntersect": PROVED,
        "QuorumIntersection": PROVED,
        "CorrectInIntersection": PROVED,
    }
    assert check_params({"n": 3 * f + 1, "f": f})["q"] == 2 * f + 1


@pytest.mark.parametrize("f", [1, 2, 3])
def test_with_3f_nodes_z3_returns_two_quorums_sharing_only_f(f: int) -> None:
    n, q = 3 * f, 2 * f
    outcomes = run(n=n, f=f)
    assert outcomes["MajoritiesIntersect"].verdict == PROVED

    broken = outcomes["QuorumIntersection"]
    assert broken.verdict == FAILED and broken.counterexample is not None
    q1, q2 = two_quorums(broken.counterexample.data)
    nodes = {f"n{i}" for i in range(1, n + 1)}
    assert q1 <= nodes and q2 <= nodes
    assert len(q1) >= q and len(q2) >= q
    assert len(q1 & q2) < f + 1
    assert "Q1 = {" in broken.counterexample.text and "Q2 = {" in broken.counterexample.text

    no_correct = outcomes["CorrectInIntersection"]
    assert no_correct.verdict == FAILED and no_correct.counterexample is not None
    q1, q2 = two_quorums(no_correct.counterexample.data)
    faulty = set(no_correct.counterexample.data["faulty"])
    assert len(q1) >= q and len(q2) >= q and len(faulty) <= f
    assert (q1 & q2) <= faulty, "every common node is faulty"


@pytest.mark.parametrize("n", range(2, 10))
def test_any_two_majorities_intersect(n: int) -> None:
    # f only shapes the BFT lemmas; the majority lemma depends on n alone.
    assert run(n=n, f=1)["MajoritiesIntersect"].verdict == PROVED


def test_half_is_not_a_quorum() -> None:
    # Quorums of exactly half the nodes may be disjoint.
    outcome = run(n=4, f=1, q=2)["QuorumIntersection"]
    assert outcome.verdict == FAILED and outcome.counterexample is not None
    q1, q2 = two_quorums(outcome.counterexample.data)
    assert len(q1) >= 2 and len(q2) >= 2 and len(q1 & q2) < 2


def test_larger_systems_are_proved_too() -> None:
    # Symmetry breaking keeps 40 nodes fast; without it z3 timed out near 20.
    assert {o.verdict for o in run(n=40, f=13).values()} == {PROVED}
    assert run(n=39, f=13)["QuorumIntersection"].verdict == FAILED


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": 3, "f": 3}, "f must be less than n"),
        ({"n": 4, "f": 1, "q": 5}, "q must be at most n=4"),
    ],
)
def test_inconsistent_parameters_are_refused(params: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_params(params)
