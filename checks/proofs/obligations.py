"""What a proof step is and what it reports: the common currency of ``checks/proofs``.

Where it sits: ``induction`` (inductive invariants of an encoded spec),
``crosscheck`` and ``quorums`` (lemmas) each produce ``Obligation`` values;
``checks/cli/prove.py`` discharges them and prints or serialises the ``Outcome``.
An obligation is proved when z3 finds its negation unsatisfiable; when z3 finds a
model instead, the obligation's own code decodes it into a ``Counterexample``
(text for people, JSON for tools).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import z3

from distcheck.checks.verdict import OK, VIOLATED

PROVED, FAILED, UNKNOWN = "proved", "failed", "unknown"
#: Not run (e.g. the cross-check of an instance too large to enumerate); ``detail`` says why.
SKIPPED = "skipped"

#: How long z3 may think about one query before the obligation is reported unknown.
DEFAULT_TIMEOUT_SECONDS = 120.0


@attrs.frozen
class Counterexample:
    """Why an obligation fails: ``text`` is printed, ``data`` goes into ``--json``,
    and ``values`` keeps the same parts as Python values (spec states and actions),
    for callers that check or replay them."""

    text: str
    data: dict[str, Any]
    values: dict[str, Any] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class Verdict:
    """An obligation's answer before timing: PROVED, FAILED (with a counterexample),
    UNKNOWN (z3 gave up) or SKIPPED; ``detail`` says more (why, or what was covered)."""

    verdict: str
    counterexample: Counterexample | None = None
    detail: str = ""


@attrs.frozen
class Obligation:
    """A claim to check: a short ``name``, the claim in symbols or English, and the
    function that checks it."""

    name: str
    statement: str
    check: Callable[[], Verdict] = attrs.field(eq=False)


@attrs.frozen
class Outcome:
    """A discharged obligation: its ``verdict`` (proved, failed, unknown or skipped) and time."""

    name: str
    statement: str
    verdict: str
    seconds: float
    counterexample: Counterexample | None = None
    detail: str = ""

    @property
    def fine(self) -> bool:
        """Proved, or deliberately skipped (which the output says)."""
        return self.verdict in (PROVED, SKIPPED)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "statement": self.statement,
            "verdict": self.verdict,
            "seconds": round(self.seconds, 3),
        }
        if self.detail:
            out["detail"] = self.detail
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample.data
        return out


def discharge(obligation: Obligation) -> Outcome:
    """Check one obligation and time it."""
    started = time.perf_counter()
    verdict = obligation.check()
    seconds = time.perf_counter() - started
    return Outcome(
        obligation.name, obligation.statement, verdict.verdict, seconds, verdict.counterexample, verdict.detail
    )


def overall(outcomes: Sequence[Outcome]) -> str:
    """The proof's verdict (``checks.verdict``): "ok" when every obligation is proved
    (or skipped), "violated" when one failed, else "unknown"."""
    if all(o.fine for o in outcomes):
        return OK
    if any(o.verdict == FAILED for o in outcomes):
        return VIOLATED
    return UNKNOWN


def find_model(
    constraints: Sequence[z3.BoolRef],
    *,
    prefer: Sequence[z3.BoolRef] = (),
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[str, z3.ModelRef | None, str]:
    """Look for a model of ``constraints``: ("unsat", None, ""), ("sat", model, "")
    or ("unknown", None, reason).

    ``prefer`` lists soft constraints: among the models, z3's optimiser looks for one
    satisfying as many as it can, which keeps counterexamples small (e.g. "as close
    to the initial state as possible").  If the optimiser runs out of time, the first
    model found is returned instead.
    """
    solver = z3.Solver()
    solver.set("timeout", int(timeout * 1000))
    solver.add(*constraints)
    status = solver.check()
    if status == z3.unsat:
        return "unsat", None, ""
    if status != z3.sat:
        return "unknown", None, solver.reason_unknown()
    model = solver.model()
    if prefer:
        optimizer = z3.Optimize()
        optimizer.set("timeout", int(timeout * 1000))
        optimizer.add(*constraints)
        for soft in prefer:
            optimizer.add_soft(soft)
        if optimizer.check() == z3.sat:
            model = optimizer.model()
    return "sat", model, ""
