"""Logical clocks' update rules (``spec/clocks.py``), proved by z3 for all integers.

Where it sits: in ``checks/proofs``, registered as the provable target ``clocks``
(``distcheck prove clocks``).  Like ``quorums``, a set of lemmas rather than an
induction over a bounded spec: each is a claim about one step of a clock, for
every value of every variable (unbounded integers, the skew ε included), which is
what the bounded exploration of ``spec/clocks.py`` cannot give.

- **LamportStep**: a Lamport clock's next value exceeds its own and the received
  one: max(L, Lm) + 1 > L and > Lm.  The clock condition follows by induction
  along happened-before (program order and send → receive, each one step).
- **HlcStep**: the same for HLC, ordered as pairs (l, c): the next stamp exceeds
  the process's own (on any event) and the message's (on a receipt), whatever the
  physical clock reads, backwards jumps included.  Hence HLC's clock condition, and
  that it never goes backwards.
- **HlcNearPhysical**: if every l known so far (the process's own, the message's)
  is at most now + ε, and the physical clock reads pt in [now, now + ε], then the
  next l satisfies pt ≤ l ≤ pt + ε and again l ≤ now + ε (true time only grows,
  so the hypothesis is an invariant): HLC stays within ε of physical time.
- **HlcCounterResets**: when the next l is above both the own and the message's l
  (the physical clock moved past them), the counter is 0: c grows only among
  events sharing an l, which is what bounds it (``HlcCounterBounded`` in the spec).

Each lemma is checked by asking z3 for a counterexample (the hypotheses and the
negated claim); none means it holds for all integers.  ``broken`` names an update
rule of ``spec/clocks.py``'s variants, for the tests to show each lemma fails on
the mistake it is about.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

PARAMS: tuple[ParamInfo, ...] = ()

#: the update rules a test may swap in (``spec/clocks.py``'s variants)
BROKEN = (
    "lamport_skips_max",
    "hlc_physical_only",
    "hlc_no_counter",
    "hlc_without_physical",
    "hlc_counter_never_resets",
)


def check_params(values: Mapping[str, Any]) -> dict[str, int]:
    return {}


def _max(*xs: z3.ArithRef) -> z3.ArithRef:
    out = xs[0]
    for x in xs[1:]:
        out = z3.If(x > out, x, out)
    return out


def lamport(own: z3.ArithRef, received: z3.ArithRef, broken: str | None = None) -> z3.ArithRef:
    if broken == "lamport_skips_max":
        return own + 1
    return _max(own, received) + 1


def hlc(
    own: tuple[z3.ArithRef, z3.ArithRef],
    pt: z3.ArithRef,
    received: tuple[z3.ArithRef, z3.ArithRef] | None,
    broken: str | None = None,
) -> tuple[z3.ArithRef, z3.ArithRef]:
    """HLC's next (l, c), as ``Clocks.hlc`` computes it (or a variant's rule)."""
    l, c = own  # noqa: E741 - the paper's names
    if broken == "hlc_physical_only":
        return pt, z3.IntVal(0)
    if broken == "hlc_without_physical":
        pt = z3.IntVal(0)
    if received is None:
        nl = _max(l, pt)
        nc = z3.If(nl == l, c + 1, z3.IntVal(0))
    else:
        lm, cm = received
        nl = _max(l, lm, pt)
        nc = z3.If(
            z3.And(nl == l, nl == lm),
            _max(c, cm) + 1,
            z3.If(nl == l, c + 1, z3.If(nl == lm, cm + 1, z3.IntVal(0))),
        )
    if broken == "hlc_no_counter":
        nc = z3.IntVal(0)
    if broken == "hlc_counter_never_resets":
        nc = (c if received is None else _max(c, received[1])) + 1
    return nl, nc


def _below(a: tuple[z3.ArithRef, z3.ArithRef], b: tuple[z3.ArithRef, z3.ArithRef]) -> z3.BoolRef:
    """(l, c) < (l', c') as pairs."""
    return z3.Or(a[0] < b[0], z3.And(a[0] == b[0], a[1] < b[1]))


def _prove(
    names: tuple[str, ...],
    build: Callable[[dict[str, z3.ArithRef]], tuple[list[z3.BoolRef], z3.BoolRef]],
    timeout: float,
) -> Verdict:
    v = {name: z3.Int(name) for name in names}
    hypotheses, claim = build(v)
    status, model, reason = find_model([*hypotheses, z3.Not(claim)], timeout=timeout)
    if status == "unsat":
        return Verdict(PROVED)
    if model is None:
        return Verdict(UNKNOWN, detail=f"z3 gave up: {reason or 'unknown'}")
    values = {name: model.eval(x, model_completion=True).as_long() for name, x in v.items()}
    text = "a counterexample: " + ", ".join(f"{name} = {value}" for name, value in values.items())
    return Verdict(FAILED, Counterexample(text, {"values": values}))


def obligations(
    params: Mapping[str, int], *, timeout: float = DEFAULT_TIMEOUT_SECONDS, broken: str | None = None
) -> list[Obligation]:
    counters = ("c", "cm")

    def nonnegative(v: dict[str, z3.ArithRef], *names: str) -> list[z3.BoolRef]:
        return [v[n] >= 0 for n in names]

    def lamport_step(v: dict[str, z3.ArithRef]) -> tuple[list[z3.BoolRef], z3.BoolRef]:
        nxt = lamport(v["L"], v["Lm"], broken)
        return [], z3.And(nxt > v["L"], nxt > v["Lm"])

    def hlc_step(v: dict[str, z3.ArithRef]) -> tuple[list[z3.BoolRef], z3.BoolRef]:
        own, msg = (v["l"], v["c"]), (v["lm"], v["cm"])
        local = hlc(own, v["pt"], None, broken)
        receipt = hlc(own, v["pt"], msg, broken)
        return nonnegative(v, *counters), z3.And(_below(own, local), _below(own, receipt), _below(msg, receipt))

    def near_physical(v: dict[str, z3.ArithRef]) -> tuple[list[z3.BoolRef], z3.BoolRef]:
        now, eps, pt = v["now"], v["eps"], v["pt"]
        hypotheses = [
            eps >= 0,
            now <= pt,
            pt <= now + eps,
            v["l"] <= now + eps,
            v["lm"] <= now + eps,
            *nonnegative(v, *counters),
        ]
        claims = []
        for nl, _ in (hlc((v["l"], v["c"]), pt, None, broken), hlc((v["l"], v["c"]), pt, (v["lm"], v["cm"]), broken)):
            claims += [pt <= nl, nl <= pt + eps, nl <= now + eps]
        return hypotheses, z3.And(*claims)

    def counter_resets(v: dict[str, z3.ArithRef]) -> tuple[list[z3.BoolRef], z3.BoolRef]:
        own, msg = (v["l"], v["c"]), (v["lm"], v["cm"])
        nl, nc = hlc(own, v["pt"], msg, broken)
        local_l, local_c = hlc(own, v["pt"], None, broken)
        return nonnegative(v, *counters), z3.And(
            z3.Implies(z3.And(nl > v["l"], nl > v["lm"]), nc == 0),
            z3.Implies(local_l > v["l"], local_c == 0),
        )

    hlc_vars = ("l", "c", "lm", "cm", "pt")
    return [
        Obligation(
            "LamportStep",
            "max(L, Lm) + 1 exceeds L and Lm: each event's Lamport clock is above its predecessors'",
            lambda: _prove(("L", "Lm"), lamport_step, timeout),
        ),
        Obligation(
            "HlcStep",
            "HLC's next (l, c) exceeds its own and, on a receipt, the message's, whatever pt reads",
            lambda: _prove(hlc_vars, hlc_step, timeout),
        ),
        Obligation(
            "HlcNearPhysical",
            "with every known l ≤ now + ε and pt in [now, now + ε]: pt ≤ l' ≤ pt + ε and l' ≤ now + ε",
            lambda: _prove((*hlc_vars, "now", "eps"), near_physical, timeout),
        ),
        Obligation(
            "HlcCounterResets",
            "when l' is above the own and the message's l, c' = 0",
            lambda: _prove(hlc_vars, counter_resets, timeout),
        ),
    ]
