"""The cross-check: an encoding says exactly what the executable spec does.

Where it sits: in ``checks/proofs``, between an ``Encoding`` and the spec it encodes
(seen only through the contract of ``spec.contract``).  ``distcheck prove`` runs it
before the proof obligations, and the tests run it on every registered encoding,
so that a change to a spec without its encoding (or the reverse) fails.

A z3 proof is only as good as the formulas it is about.  For a bounded instance,
on every state reachable in the executable spec (found by breadth-first search):

1. the state survives the trip to field values and back, and the encoding's
   Init holds exactly on the spec's initial states (z3 enumerates Init's models);
2. every step the spec takes, ``s --a--> t``, satisfies the z3 relation of ``a``
   (the action is one the encoding knows, its guard holds in ``s`` and its updates
   give ``t``);
3. every action whose z3 guard holds in ``s`` is enabled in the spec, with the same
   successor;
4. each of the encoding's safety properties agrees with the spec's invariant of
   the same name.

For an **abstraction** (``Encoding.abstraction``), which forgets part of the state
and over-approximates the spec's steps, equality cannot hold; what a proof needs is
that the abstraction *simulates* the spec, and that is what is checked instead, on
every reachable state s:

1. the abstraction α(s) of a spec initial state satisfies the encoding's Init;
2. ``state`` gives a witness of α(s): a spec state whose abstraction is α(s);
3. for every spec step s --a--> t, the abstract steps ``simulate`` names take
   α(s) to α(t), each with its guard true and its updates as computed;
4. each safety property agrees with the spec's invariant of the same name on α(s);
5. each of the encoding's actions that is a spec action (not an abstract step of
   its own) and whose z3 guard holds on α(s) is enabled in the spec in s, and
   unless its successor t is out of bounds, z3's successor is α(t).

Then every reachable spec state's abstraction is reachable in the encoding, and an
invariant proved for the encoding holds, through α, in the spec.  (That every
abstract step of its own is a spec step is not claimed: those over-approximate.)

Formulas are evaluated by z3 itself (``substitute`` then ``simplify``), through the
memo of ``system.Evaluator``.  Since every ``relation`` is built by the framework
from a guard and updates with a frame condition, checking guard and updates checks
the relation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import z3

from distcheck.checks.proofs.obligations import FAILED, PROVED, Counterexample, Verdict, find_model
from distcheck.checks.proofs.system import Encoding, Evaluator, SymState
from distcheck.checks.traces.render import show, state_table
from distcheck.spec.codec import to_json
from distcheck.spec.contract import Spec


@attrs.frozen
class Mismatch:
    """One disagreement between an encoding and its spec."""

    kind: str
    detail: str
    state: Any = None
    action: Any = None

    def render(self) -> str:
        lines = [f"{self.kind}: {self.detail}"]
        if self.action is not None:
            lines.append(f"  action: {show(self.action)}")
        if self.state is not None:
            lines.append("  in state:")
            lines += ["    " + line for line in state_table(self.state).splitlines()]
        return "\n".join(lines)


@attrs.frozen
class Report:
    """How many states and steps were compared, and the first mismatches found."""

    states: int
    steps: int
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        return f"{self.states:,} reachable states, {self.steps:,} steps"

    def verdict(self) -> Verdict:
        if self.ok:
            return Verdict(PROVED, detail=self.summary())
        text = "the z3 encoding and the executable spec disagree:\n" + "\n".join(m.render() for m in self.mismatches)
        data = {
            "mismatches": [
                {
                    "kind": m.kind,
                    "detail": m.detail,
                    "state": None if m.state is None else to_json(m.state),
                    "action": None if m.action is None else to_json(m.action),
                }
                for m in self.mismatches
            ]
        }
        return Verdict(FAILED, Counterexample(text, data), detail=self.summary())


Steps = Mapping[Any, Sequence[tuple[Any, Any]]]


def reachable_states(spec: Spec[Any, Any], limit: int | None = None) -> list[Any]:
    """Every state reachable in ``spec`` (breadth-first; unreduced, since the
    encoding names every node).  Successors outside the spec's state constraint
    (``within_bounds``) are discarded, as the explorer does.  ValueError past
    ``limit`` states."""
    return list(reachable_steps(spec, limit))


def reachable_steps(spec: Spec[Any, Any], limit: int | None = None) -> dict[Any, list[tuple[Any, Any]]]:
    """Every reachable state (keys, in breadth-first order, as ``reachable_states``)
    with its steps within the bounds, so that ``cross_check`` need not compute
    them again."""
    steps: dict[Any, list[tuple[Any, Any]]] = {}
    queue: deque[Any] = deque()
    seen = set()
    for init in spec.init_states():
        if init not in seen:
            seen.add(init)
            queue.append(init)
    while queue:
        state = queue.popleft()
        steps[state] = bounded_successors(spec, state)
        for _, nxt in steps[state]:
            if nxt not in seen:
                if limit is not None and len(seen) >= limit:
                    raise ValueError(f"more than {limit:,} reachable states")
                seen.add(nxt)
                queue.append(nxt)
    return steps


def bounded_successors(spec: Spec[Any, Any], state: Any) -> list[tuple[Any, Any]]:
    """The steps of the bounded instance from ``state``: successors within the
    spec's state constraint."""
    return [(action, nxt) for action, nxt in spec.successors(state) if spec.within_bounds(nxt)]


class _CompiledAction:
    """One action's guard and updates, ready to evaluate on concrete values."""

    def __init__(self, encoding: Encoding[Any, Any], action: Any, s: SymState) -> None:
        step = encoding.transition(action, s)
        self.guard = Evaluator(step.guard, s)
        self.updates = {name: Evaluator(term, s, name) for name, term in step.update_terms(s).items()}


def cross_check(
    encoding: Encoding[Any, Any],
    states: Sequence[Any] | Steps | None = None,
    *,
    max_mismatches: int = 3,
) -> Report:
    """Compare ``encoding`` with ``encoding.spec`` on ``states`` (default: every
    reachable state; a mapping from ``reachable_steps`` also gives each state's
    steps).  Stops after ``max_mismatches`` disagreements."""
    spec = encoding.spec
    if states is None:
        states = reachable_steps(spec)
    known: Steps = states if isinstance(states, Mapping) else {}

    def steps_from(state: Any) -> Sequence[tuple[Any, Any]]:
        found = known.get(state)
        return found if found is not None else bounded_successors(spec, state)

    states = list(states)
    if encoding.abstraction:
        return _check_simulation(encoding, states, steps_from, max_mismatches)
    s = encoding.symbolic()
    mismatches: list[Mismatch] = []

    def note(m: Mismatch) -> bool:
        mismatches.append(m)
        return len(mismatches) >= max_mismatches

    for m in _check_init(encoding, s):
        if note(m):
            return Report(len(states), 0, tuple(mismatches))

    actions = list(encoding.actions())
    index = {a: i for i, a in enumerate(actions)}
    compiled = [_CompiledAction(encoding, a, s) for a in actions]
    invariants = {inv.name: inv for inv in spec.invariants()}
    properties = []
    for prop in encoding.properties():
        if prop.name not in invariants:
            names = ", ".join(invariants)
            note(Mismatch("property", f"{prop.name} is not an invariant of the spec (it has: {names})"))
            return Report(len(states), 0, tuple(mismatches))
        properties.append((prop.name, Evaluator(prop.formula(s), s), invariants[prop.name].holds))

    # Every successor of a reachable state is itself reachable: encode each once.
    encoded: dict[Any, Mapping[str, Hashable]] = {}

    def encode(state: Any) -> Mapping[str, Hashable]:
        values = encoded.get(state)
        if values is None:
            values = encoded[state] = _values_of(encoding, state)
        return values

    steps = 0
    for state in states:
        try:
            values = encode(state)
        except ValueError as exc:
            if note(Mismatch("values", str(exc), state)):
                break
            continue
        spec_steps = dict(steps_from(state))
        enabled_in_spec = set(spec.actions(state))
        for action, nxt in spec_steps.items():
            steps += 1
            if action not in index:
                if note(
                    Mismatch("unknown action", "the spec takes an action the encoding does not list", state, action)
                ):
                    break
                continue
            try:
                after = encode(nxt)
            except ValueError as exc:
                if note(Mismatch("values", str(exc), nxt)):
                    break
                continue
            problem = _compare_step(compiled[index[action]], values, after)
            if problem and note(Mismatch("spec step outside the z3 relation", problem, state, action)):
                break
        if len(mismatches) >= max_mismatches:
            break
        for action, comp in zip(actions, compiled):
            if action in spec_steps or not comp.guard.holds(values):
                continue
            reason = "not in actions()" if action not in enabled_in_spec else "its successor is out of bounds"
            if note(Mismatch("z3 enables an action the spec does not", reason, state, action)):
                break
        if len(mismatches) >= max_mismatches:
            break
        for name, formula, holds in properties:
            z3_says, spec_says = formula.holds(values), holds(state)
            if z3_says != spec_says and note(
                Mismatch("property", f"{name} is {z3_says} in z3 but {spec_says} in the spec", state)
            ):
                break
        if len(mismatches) >= max_mismatches:
            break
    return Report(len(states), steps, tuple(mismatches))


def _values_of(encoding: Encoding[Any, Any], state: Any) -> Mapping[str, Hashable]:
    """The state's field values, checked against the domains and the round trip."""
    values = encoding.values(state)
    fields = encoding.fields()
    names = {f.name for f in fields}
    if set(values) != names:
        missing, extra = sorted(names - set(values)), sorted(set(values) - names)
        raise ValueError(f"values() gives the wrong fields (missing {missing}, extra {extra})")
    for f in fields:
        f.index(values[f.name])
    back = encoding.state(values)
    if back != state:
        raise ValueError(f"state(values(s)) is not s: got {show(back)}")
    return values


def _compare_step(
    compiled: _CompiledAction, values: Mapping[str, Hashable], after: Mapping[str, Hashable]
) -> str | None:
    """Why the spec's step from ``values`` to ``after`` is not the z3 relation's step
    (None if it is)."""
    if not compiled.guard.holds(values):
        return "its z3 guard is false here"
    for name in after:
        update = compiled.updates.get(name)
        try:
            z3_value = update(values) if update is not None else values[name]
        except ValueError as exc:
            return f"z3 sets a field outside its domain: {exc}"
        if z3_value != after[name]:
            return f"z3 sets {name} to {show(z3_value)}, the spec to {show(after[name])}"
    return None


def _check_init(encoding: Encoding[Any, Any], s: SymState) -> Iterable[Mismatch]:
    """The spec's initial states are exactly the models of the encoding's Init."""
    spec_inits = list(encoding.spec.init_states())
    init = Evaluator(encoding.init(s), s)
    for state in spec_inits:
        try:
            values = _values_of(encoding, state)
        except ValueError as exc:
            yield Mismatch("values", str(exc), state)
            continue
        if not init.holds(values):
            yield Mismatch("init", "a spec initial state does not satisfy the z3 Init", state)
    # Enumerate Init's models, one more than the spec has, blocking each one found.
    blocked: list[z3.BoolRef] = []
    for _ in range(len(spec_inits) + 1):
        status, model, _reason = find_model([s.typed(), encoding.init(s), *blocked])
        if status != "sat" or model is None:
            return
        values = s.read(model)
        state = encoding.state(values)
        if state not in spec_inits:
            yield Mismatch("init", "the z3 Init allows a state that is not a spec initial state", state)
            return
        blocked.append(z3.Not(s.equals(values)))


def _check_simulation(
    encoding: Encoding[Any, Any],
    states: Sequence[Any],
    steps_from: Callable[[Any], Sequence[tuple[Any, Any]]],
    max_mismatches: int,
) -> Report:
    """The cross-check of an abstraction: it simulates every spec step (see the
    module docstring)."""
    spec = encoding.spec
    s = encoding.symbolic()
    mismatches: list[Mismatch] = []

    def note(m: Mismatch) -> bool:
        mismatches.append(m)
        return len(mismatches) >= max_mismatches

    init = Evaluator(encoding.init(s), s)
    for state in spec.init_states():
        if not init.holds(encoding.values(state)) and note(
            Mismatch("init", "the abstraction of a spec initial state does not satisfy the z3 Init", state)
        ):
            return Report(len(states), 0, tuple(mismatches))

    actions = list(encoding.actions())
    compiled = {a: _CompiledAction(encoding, a, s) for a in actions}
    # The encoding's actions that are the spec's own (not abstract steps).
    shared = [a for a in actions if spec.rule_of(a) is not None]
    invariants = {inv.name: inv for inv in spec.invariants()}
    properties = []
    for prop in encoding.properties():
        if prop.name not in invariants:
            note(Mismatch("property", f"{prop.name} is not an invariant of the spec (it has: {', '.join(invariants)})"))
            return Report(len(states), 0, tuple(mismatches))
        properties.append((prop.name, Evaluator(prop.formula(s), s), invariants[prop.name].holds))

    abstracted: dict[Any, Mapping[str, Hashable]] = {}

    def abstract(state: Any) -> Mapping[str, Hashable]:
        values = abstracted.get(state)
        if values is None:
            values = abstracted[state] = encoding.values(state)
            for f in encoding.fields():
                f.index(values[f.name])
        return values

    steps = 0
    for state in states:
        try:
            values = abstract(state)
            witness = encoding.values(encoding.state(values))
        except ValueError as exc:
            if note(Mismatch("values", str(exc), state)):
                break
            continue
        if witness != values and note(
            Mismatch("values", "state(values(s)) does not have the abstraction values(s)", state)
        ):
            break
        for name, formula, holds in properties:
            z3_says, spec_says = formula.holds(values), holds(state)
            if z3_says != spec_says and note(
                Mismatch("property", f"{name} is {z3_says} in z3 but {spec_says} in the spec", state)
            ):
                return Report(len(states), steps, tuple(mismatches))
        spec_steps = steps_from(state)
        for action, nxt in spec_steps:
            steps += 1
            try:
                problem = _follow(compiled, encoding.simulate(state, action, nxt), values, abstract(nxt))
            except ValueError as exc:
                problem = str(exc)
            if problem and note(Mismatch("spec step the abstraction does not simulate", problem, state, action)):
                return Report(len(states), steps, tuple(mismatches))
        taken = dict(spec_steps)
        for action in shared:
            if not compiled[action].guard.holds(values):
                continue
            nxt = taken.get(action)
            if nxt is None:
                if spec.next_state(state, action) is None:  # (else: its successor is out of bounds)
                    problem = "the spec does not take it here"
                else:
                    continue
            else:
                problem = _follow(compiled, [action], values, abstract(nxt))
            if problem and note(
                Mismatch("z3 step of a spec action that the spec does not take", problem, state, action)
            ):
                return Report(len(states), steps, tuple(mismatches))
    return Report(len(states), steps, tuple(mismatches))


def _follow(
    compiled: Mapping[Any, _CompiledAction],
    path: Sequence[Any],
    values: Mapping[str, Hashable],
    target: Mapping[str, Hashable],
) -> str | None:
    """Why the abstract steps ``path`` from ``values`` do not end in ``target`` (None
    if they do)."""
    current = dict(values)
    for action in path:
        comp = compiled.get(action)
        if comp is None:
            return f"{show(action)} is not an action of the encoding"
        if not comp.guard.holds(current):
            return f"the z3 guard of {show(action)} is false"
        current = {**current, **{name: update(current) for name, update in comp.updates.items()}}
    wrong = [name for name in target if current[name] != target[name]]
    if wrong:
        return "the abstract steps end elsewhere: " + ", ".join(
            f"{name} is {show(current[name])}, the spec's {show(target[name])}" for name in wrong[:5]
        )
    return None
