"""Inductive-invariant obligations of an encoded spec, and their counterexamples.

Where it sits: built on ``system`` (the encoding) and ``obligations`` (results);
``registry`` calls ``obligations`` for every spec it can prove.

For a candidate invariant Inv (a conjunction of named predicates) and a bounded
instance, three kinds of obligation:

- **Init ⇒ Inv**: every initial state satisfies Inv;
- **Inv ∧ Next ⇒ Inv′**: every step from a state satisfying Inv reaches a state
  satisfying Inv (Inv is inductive);
- **Inv ⇒ P**, for each safety property P of the spec (e.g. TCConsistent).

Together they prove that P holds in every reachable state of the instance.  A failed
obligation comes back as real spec states, decoded from z3's model: a state (for
the first and last kind), or a *counterexample to induction*, a state satisfying Inv
and a step to one that does not, with the conjuncts that break.  Among all such
models the one closest to the initial state is chosen, which keeps it short.  When
the caller knows the reachable states, the counterexample also says whether its
first state is reachable: if not, the candidate is too weak (strengthen it); if so,
the spec itself breaks the invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
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
from distcheck.checks.proofs.system import Candidate, Encoding, Predicate, SymState, bool_value
from distcheck.checks.traces.render import changes, show, state_table
from distcheck.spec.codec import to_json


def obligations(
    encoding: Encoding[Any, Any],
    candidate: Candidate,
    *,
    is_reachable: Callable[[Any], bool | None] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[Obligation]:
    """Init ⇒ Inv, Inv ∧ Next ⇒ Inv′ and Inv ⇒ P for each of the encoding's properties."""
    inv = candidate.name
    out = [
        Obligation(
            "Initiation",
            f"Init ⇒ {inv}",
            lambda: _initiation(encoding, candidate, timeout),
        ),
        Obligation(
            "Consecution",
            f"{inv} ∧ Next ⇒ {inv}′",
            lambda: _consecution(encoding, candidate, is_reachable, timeout),
        ),
    ]
    for prop in encoding.properties():
        out.append(
            Obligation(
                f"Safety({prop.name})",
                f"{inv} ⇒ {prop.name}",
                lambda prop=prop: _safety(encoding, candidate, prop, timeout),  # type: ignore[misc]
            )
        )
    return out


def _initiation(encoding: Encoding[Any, Any], candidate: Candidate, timeout: float) -> Verdict:
    s = encoding.symbolic()
    status, model, reason = find_model([s.typed(), encoding.init(s), z3.Not(candidate.formula(s))], timeout=timeout)
    if status != "sat" or model is None:
        return _no_model(status, reason)
    state = encoding.state(s.read(model))
    failing = _failing(candidate.conjuncts, s, model)
    text = "an initial state that breaks the invariant:\n" + _indent(state_table(state)) + _failing_text(failing)
    return Verdict(FAILED, _counterexample(text, state=state, failing=failing))


def _safety(encoding: Encoding[Any, Any], candidate: Candidate, prop: Predicate, timeout: float) -> Verdict:
    s = encoding.symbolic()
    constraints = [s.typed(), candidate.formula(s), z3.Not(prop.formula(s))]
    status, model, reason = find_model(constraints, prefer=_near_init(encoding, s), timeout=timeout)
    if status != "sat" or model is None:
        return _no_model(status, reason)
    state = encoding.state(s.read(model))
    text = (
        f"a state that satisfies {candidate.name} but not {prop.name}:\n"
        + _indent(state_table(state))
        + _failing_text([prop])
    )
    return Verdict(FAILED, _counterexample(text, state=state, failing=[prop]))


def _consecution(
    encoding: Encoding[Any, Any],
    candidate: Candidate,
    is_reachable: Callable[[Any], bool | None] | None,
    timeout: float,
) -> Verdict:
    s, t = encoding.symbolic(), encoding.symbolic("′")
    # Inv′ includes the field domains: an update computed by a z3 term (a ballot
    # plus one, say) must not leave its domain, or the bounded instance is unsound.
    goal = (FIELD_DOMAINS, *candidate.conjuncts)
    constraints = [
        s.typed(),
        candidate.formula(s),
        encoding.next_relation(s, t),
        z3.Not(z3.And(*[c.formula(t) for c in goal])),
    ]
    status, model, reason = find_model(constraints, prefer=_near_init(encoding, s), timeout=timeout)
    if status != "sat" or model is None:
        return _no_model(status, reason)
    action = next(
        a for a in encoding.actions() if bool_value(model.eval(encoding.relation(a, s, t), model_completion=True))
    )
    before = encoding.state(s.read(model))
    failing = _failing(goal, t, model)
    try:
        after = encoding.state(t.read(model))
        step_lines = "\n".join(changes(before, after)) or "(no change)"
    except ValueError as exc:
        after, step_lines = None, f"leaves a field outside its domain: {exc}"
    # An abstraction's steps are its own: there is no spec step to compare with.
    spec_agrees = None if encoding.abstraction else encoding.spec.next_state(before, action) == after
    reachable = None if is_reachable is None else is_reachable(before)

    lines = [
        f"counterexample to induction: a state satisfying {candidate.name}, and a step to one that does not",
        "",
        "state before the step" + _reachability_note(reachable, candidate.name) + ":",
        _indent(state_table(before)),
        f"step: {action.actor}  {show(action)}",
        _indent(step_lines),
    ]
    if spec_agrees is False:
        # The cross-check should have caught this; say so rather than print a
        # counterexample the executable spec would not produce.
        lines.append("warning: the executable spec does not take this step (the encoding has drifted from it)")
    text = "\n".join(lines) + _failing_text(failing)
    return Verdict(
        FAILED,
        _counterexample(
            text,
            state=before,
            action=action,
            action_text=str(action),
            next_state=after,
            failing=failing,
            before_reachable=reachable,
            spec_agrees=spec_agrees,
        ),
    )


FIELD_DOMAINS = Predicate("FieldDomains", "every field holds a value of its domain", lambda s: s.typed())


def _near_init(encoding: Encoding[Any, Any], s: SymState) -> list[z3.BoolRef]:
    """Soft constraints: each field as in the first initial state."""
    first = next(iter(encoding.spec.init_states()), None)
    if first is None:
        return []
    values: Mapping[str, Hashable] = encoding.values(first)
    return [s.is_(name, value) for name, value in values.items()]


def _failing(conjuncts: Sequence[Predicate], s: SymState, model: z3.ModelRef) -> list[Predicate]:
    return [c for c in conjuncts if not bool_value(model.eval(c.formula(s), model_completion=True))]


def _failing_text(failing: Sequence[Predicate]) -> str:
    return "\nfails:\n" + "\n".join(f"  {p.name}: {p.statement}" for p in failing)


def _reachability_note(reachable: bool | None, inv: str) -> str:
    if reachable is None:
        return ""
    if reachable:
        return " (reachable: the spec itself breaks the invariant)"
    return f" (not reachable from Init: {inv} is too weak to be inductive)"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _counterexample(text: str, *, failing: Sequence[Predicate], **parts: Any) -> Counterexample:
    data: dict[str, Any] = {}
    for key, value in parts.items():
        data[key] = value if value is None or isinstance(value, bool) else to_json(value)
    data["failing"] = [p.name for p in failing]
    return Counterexample(text, data, dict(parts))


def _no_model(status: str, reason: str) -> Verdict:
    if status == "unsat":
        return Verdict(PROVED)
    return Verdict(UNKNOWN, detail=f"z3 gave up: {reason or 'unknown'}")
