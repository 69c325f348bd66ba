"""Quorum-intersection lemmas, proved by z3 for a given number of nodes.

Where it sits: in ``checks/proofs``, registered as the provable target ``quorums``
(``distcheck prove quorums -p n=N -p f=F``).  It is not an executable spec: its
parameters are declared here, and its obligations are lemmas, not an induction.

Consensus protocols are safe because any two quorums overlap:

- **MajoritiesIntersect**: any two sets of more than half of the N nodes share a
  node (Paxos, Raft: two majorities cannot choose different values).
- **QuorumIntersection**: with up to f Byzantine nodes, a node can wait for N − f
  replies, so a quorum is any set of Q = N − f nodes (override with ``-p q=Q``).
  Any two quorums share at least f + 1 nodes.  With N = 3f + 1 (Q = 2f + 1) this
  holds: two quorums have 2Q − N = f + 1 nodes in common at least.  With N = 3f
  (Q = 2f) it fails, and z3 returns two quorums sharing only f nodes.
- **CorrectInIntersection**: for any set of at most f faulty nodes, any two
  quorums share a correct node (what PBFT needs: a correct node that saw both).

Each lemma is checked for the given N by asking z3 for a counterexample: two sets
of nodes (and a faulty set) as Boolean variables, sizes stated as cardinality
constraints, the nodes' symmetry broken by ordering them (see ``_intersection``).
No model means the lemma holds for this N; a model is printed as the two quorums,
their common nodes and, where it applies, the faulty nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import z3

from distcheck.checks.proofs.obligations import (
    DEFAULT_TIMEOUT_SECONDS,
    FAILED,
    PROVED,
    UNKNOWN,
    Counterexample,
    Obligation,
    Verdict,
    find_model,
)
from distcheck.spec.registry import ParamInfo

PARAMS = (
    ParamInfo("n", 4, int, "number of nodes", 1, 40),
    ParamInfo("f", 1, int, "number of faulty (Byzantine) nodes tolerated", 1, 13),
    ParamInfo("q", None, int, "quorum size (default n - f)", 1, 40),
)


def check_params(values: Mapping[str, Any]) -> dict[str, int]:
    """The parameters with defaults filled in; ValueError says which combination is
    not allowed.  (Each value's own range is checked against ``PARAMS`` first.)"""
    n = int(values.get("n", 4))
    f = int(values.get("f", 1))
    if f >= n:
        raise ValueError(f"f must be less than n (at least one node is correct), got n={n}, f={f}")
    q = values.get("q")
    q = n - f if q is None else int(q)
    if q > n:
        raise ValueError(f"q must be at most n={n}, got q={q}")
    return {"n": n, "f": f, "q": q}


def node_names(n: int) -> tuple[str, ...]:
    return tuple(f"n{i}" for i in range(1, n + 1))


def obligations(params: Mapping[str, int], *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> list[Obligation]:
    n, f, q = params["n"], params["f"], params["q"]
    majority = n // 2 + 1
    return [
        Obligation(
            "MajoritiesIntersect",
            f"any two sets of {majority} of the {n} nodes share a node",
            lambda: _intersection(n, majority, 1, faulty=None, timeout=timeout),
        ),
        Obligation(
            "QuorumIntersection",
            f"any two quorums of {q} of the {n} nodes share at least f + 1 = {f + 1} nodes",
            lambda: _intersection(n, q, f + 1, faulty=None, timeout=timeout),
        ),
        Obligation(
            "CorrectInIntersection",
            f"whichever {f} node(s) are faulty, any two quorums of {q} share a correct node",
            lambda: _intersection(n, q, 1, faulty=f, timeout=timeout),
        ),
    ]


def _intersection(n: int, size: int, overlap: int, *, faulty: int | None, timeout: float) -> Verdict:
    """Look for two sets of at least ``size`` nodes sharing fewer than ``overlap``
    nodes (not counting the at most ``faulty`` faulty ones, when given)."""
    names = node_names(n)
    first = [z3.Bool(f"Q1[{name}]") for name in names]
    second = [z3.Bool(f"Q2[{name}]") for name in names]
    bad = [z3.Bool(f"F[{name}]") for name in names]
    shared = [z3.And(a, b) for a, b in zip(first, second)]
    if faulty is not None:
        # The faulty nodes are the adversary's choice: at most ``faulty`` of them.
        shared = [z3.And(s, z3.Not(x)) for s, x in zip(shared, bad)]
    constraints = [
        z3.AtLeast(*first, size),
        z3.AtLeast(*second, size),
        z3.AtMost(*shared, overlap - 1),
    ]
    if faulty is not None:
        constraints.append(z3.AtMost(*bad, faulty))
    # Symmetry breaking.  Nodes are interchangeable, so if any counterexample exists,
    # one exists in which the nodes' memberships, read as numbers (Q1, Q2, faulty as
    # bits), never increase from n1 to nN: sort the nodes of any counterexample.
    # Without this, z3 must refute every permutation of a counting argument and
    # times out from about 20 nodes; with it, 40 nodes take milliseconds.
    signature = [
        z3.If(a, 4, 0) + z3.If(b, 2, 0) + (z3.If(x, 1, 0) if faulty is not None else 0)
        for a, b, x in zip(first, second, bad)
    ]
    constraints += [signature[i] >= signature[i + 1] for i in range(n - 1)]
    # Smallest sets that still break the lemma read best: quorums of exactly ``size``.
    prefer = [z3.Not(v) for v in (*first, *second, *(bad if faulty is not None else ()))]
    status, model, reason = find_model(constraints, prefer=prefer, timeout=timeout)
    if status == "unsat":
        return Verdict(PROVED)
    if model is None:
        return Verdict(UNKNOWN, detail=f"z3 gave up: {reason or 'unknown'}")

    def members(variables: Sequence[z3.BoolRef]) -> list[str]:
        return [name for name, v in zip(names, variables) if z3.is_true(model.eval(v, model_completion=True))]

    q1, q2 = members(first), members(second)
    common = [name for name in q1 if name in q2]
    data: dict[str, Any] = {"quorum_1": q1, "quorum_2": q2, "common": common}
    lines = [
        f"two sets of at least {size} of the {n} nodes:",
        f"  Q1 = {_set_text(q1)}",
        f"  Q2 = {_set_text(q2)}",
        f"  Q1 ∩ Q2 = {_set_text(common)} ({len(common)} node{'s' if len(common) != 1 else ''})",
    ]
    if faulty is not None:
        bad_nodes = members(bad)
        data["faulty"] = bad_nodes
        correct_common = [name for name in common if name not in bad_nodes]
        lines.append(f"  faulty = {_set_text(bad_nodes)}: no correct node in Q1 ∩ Q2" if not correct_common else "")
    else:
        lines.append(f"  fewer than {overlap} node{'s' if overlap != 1 else ''} in common")
    return Verdict(FAILED, Counterexample("\n".join(line for line in lines if line), data))


def _set_text(members: Sequence[str]) -> str:
    """``{n1..n4, n7}``: runs of three or more consecutive nodes are shortened."""
    numbers = [int(name[1:]) for name in members]
    parts: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{members[i]}..{members[j]}")
        else:
            parts += members[i : j + 1]
        i = j + 1
    return "{" + ", ".join(parts) + "}"
