"""The framework for stating a spec's bounded instance in z3.

Where it sits: the base of ``checks/proofs``.  A protocol module (``twophase.py``, and
later lock, Paxos, Raft, PBFT) subclasses ``Encoding``; ``induction`` turns an
encoding into proof obligations and ``crosscheck`` compares it with the executable
spec it claims to encode.

A bounded state is a fixed set of named **fields**, each a finite domain of plain
Python values: ``rm_state[r1] ∈ {working, prepared, committed, aborted}``,
``msg_commit ∈ {False, True}``.  Boolean fields become z3 ``Bool`` variables; any
other domain becomes a z3 ``Int`` restricted to the indices of its values (so a
field can only hold a value of its type: the spec's TypeOK is built in).  A
``SymState`` is one copy of those variables (the state before a step, or after).

An action is stated as a ``Transition``: a guard over the state before, and the
fields it changes with their new values.  The frame condition (every other field
keeps its value) is added here once, never by hand, so an encoding cannot forget a
field, and every action is a function: one successor per enabled state.

An encoding also maps real spec states to field values and back (``values`` and
``state``), which is how a z3 model becomes a readable spec state and how the
cross-check feeds reachable states to the z3 formulas.

Most encodings are exact: ``values`` is one-to-one, and the encoded steps are the
spec's steps.  An encoding may instead be an **abstraction** (``abstraction =
True``): ``values`` is an abstraction function α that forgets part of the state
(many spec states, one field valuation), ``state`` returns one spec state with the
given abstraction (a witness, for printing), the actions may be the encoding's own
abstract steps, and ``simulate`` says which abstract steps take α(s) to α(t) for a
spec step s → t.  An invariant inductive for an abstraction that simulates every
spec step holds, through α, in every reachable spec state; the cross-check checks
the simulation instead of equality.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import attrs
import z3

from distcheck.spec.contract import Spec

S = TypeVar("S")
A = TypeVar("A")

BOOL: tuple[Hashable, ...] = (False, True)


@attrs.frozen
class Field:
    """One variable of the bounded state: a name and the finite set of its values."""

    name: str
    domain: tuple[Hashable, ...] = BOOL

    @property
    def is_bool(self) -> bool:
        # Compare types too: (0, 1) == (False, True) in Python, and an int field
        # with the values 0 and 1 must stay an Int.
        return self.domain == BOOL and all(type(v) is bool for v in self.domain)

    def index(self, value: Hashable) -> int:
        """The position of ``value`` in the domain; ValueError names the allowed values."""
        for i, candidate in enumerate(self.domain):
            if candidate == value and type(candidate) is type(value):
                return i
        allowed = ", ".join(repr(v) for v in self.domain)
        raise ValueError(f"field {self.name}: {value!r} is not one of {allowed}")


def bool_value(expr: z3.ExprRef) -> bool:
    """The Python bool of a z3 constant True/False (after simplification)."""
    if z3.is_true(expr):
        return True
    if z3.is_false(expr):
        return False
    raise ValueError(f"not a boolean constant: {expr}")


class SymState:
    """One copy of the state's fields as z3 variables, named ``field`` + ``tag``
    (tag "" for the state before a step, "′" for the state after)."""

    def __init__(self, fields: Sequence[Field], tag: str = "") -> None:
        self.fields = {f.name: f for f in fields}
        self.tag = tag
        self.vars: dict[str, z3.ExprRef] = {
            f.name: z3.Bool(f.name + tag) if f.is_bool else z3.Int(f.name + tag) for f in fields
        }

    def __getitem__(self, name: str) -> z3.ExprRef:
        return self.vars[name]

    def is_(self, name: str, value: Hashable) -> z3.BoolRef:
        """The formula "field ``name`` holds ``value``"."""
        field = self.fields[name]
        if field.is_bool:
            var = self.vars[name]
            return var if value else z3.Not(var)
        return self.vars[name] == field.index(value)

    def is_in(self, name: str, values: Sequence[Hashable]) -> z3.BoolRef:
        return z3.Or(*[self.is_(name, v) for v in values])

    def term(self, name: str, value: Hashable) -> z3.ExprRef:
        """The z3 constant that stands for ``value`` in field ``name``."""
        field = self.fields[name]
        return z3.BoolVal(bool(value)) if field.is_bool else z3.IntVal(field.index(value))

    def typed(self) -> z3.BoolRef:
        """Every Int field holds the index of one of its domain's values."""
        bounds = [
            z3.And(self.vars[f.name] >= 0, self.vars[f.name] < len(f.domain))
            for f in self.fields.values()
            if not f.is_bool
        ]
        return z3.And(*bounds)

    def equals(self, values: Mapping[str, Hashable]) -> z3.BoolRef:
        """The formula "this state is exactly ``values``"."""
        return z3.And(*[self.is_(name, values[name]) for name in self.fields])

    def read(self, model: z3.ModelRef) -> dict[str, Hashable]:
        """The field values a z3 model gives this state."""
        return {name: self.decode(name, model.eval(var, model_completion=True)) for name, var in self.vars.items()}

    def decode(self, name: str, constant: z3.ExprRef) -> Hashable:
        """The Python value of a z3 constant held by field ``name``."""
        field = self.fields[name]
        if field.is_bool:
            return bool_value(constant)
        if not z3.is_int_value(constant):
            raise ValueError(f"field {name}: not an integer constant: {constant}")
        index = int(constant.as_long())
        if not 0 <= index < len(field.domain):
            raise ValueError(f"field {name}: index {index} is outside its {len(field.domain)} values")
        return field.domain[index]


@attrs.frozen
class Transition:
    """One action: enabled where ``guard`` holds; sets the fields in ``updates`` (to a
    domain value or a z3 term over the state before) and leaves the rest alone."""

    guard: z3.BoolRef
    updates: Mapping[str, Hashable | z3.ExprRef] = attrs.field(factory=dict)

    def update_terms(self, before: SymState) -> dict[str, z3.ExprRef]:
        """Each updated field's new value as a z3 term."""
        return {
            name: value if isinstance(value, z3.ExprRef) else before.term(name, value)
            for name, value in self.updates.items()
        }


@attrs.frozen
class Predicate:
    """A named formula over one state, with its one-line English statement."""

    name: str
    statement: str
    formula: Callable[[SymState], z3.BoolRef] = attrs.field(eq=False)


@attrs.frozen
class Candidate:
    """A candidate inductive invariant: the conjunction of named predicates."""

    name: str
    statement: str
    conjuncts: tuple[Predicate, ...]

    def formula(self, s: SymState) -> z3.BoolRef:
        return z3.And(*[c.formula(s) for c in self.conjuncts])


class Encoding(ABC, Generic[S, A]):
    """A spec's bounded instance in z3.  A protocol module fills in the methods; the
    framework derives the transition relation, the proof obligations and the
    cross-check against ``spec``."""

    #: True for an abstraction: ``values`` forgets part of the state and ``simulate``
    #: maps each spec step to abstract steps (see the module docstring).
    abstraction: ClassVar[bool] = False

    def __init__(self, spec: Spec[S, Any]) -> None:
        self.spec = spec
        self._fields: tuple[Field, ...] | None = None

    # ---------------------------------------------------------------- to fill in

    @abstractmethod
    def state_fields(self) -> Sequence[Field]:
        """The fields of one state, in a fixed order."""

    @abstractmethod
    def values(self, state: S) -> Mapping[str, Hashable]:
        """A spec state as field values."""

    @abstractmethod
    def state(self, values: Mapping[str, Hashable]) -> S:
        """The spec state with these field values (inverse of ``values``)."""

    @abstractmethod
    def init(self, s: SymState) -> z3.BoolRef:
        """The initial-state predicate."""

    @abstractmethod
    def actions(self) -> Sequence[A]:
        """Every action of the bounded instance (enabled or not), as spec actions."""

    @abstractmethod
    def transition(self, action: A, s: SymState) -> Transition:
        """The guard and the updates of ``action`` from state ``s``."""

    @abstractmethod
    def properties(self) -> Sequence[Predicate]:
        """The spec's safety invariants in z3, each named as in ``spec.invariants()``."""

    @abstractmethod
    def candidates(self) -> Sequence[Candidate]:
        """Candidate inductive invariants; the first is the one ``prove`` uses by default."""

    def simulate(self, state: S, action: Any, after: S) -> Sequence[A]:
        """(Abstractions only.)  The abstract steps, in order, that take
        ``values(state)`` to ``values(after)`` for the spec step ``state --action-->
        after``; none for a step the abstraction does not see.  The cross-check
        checks each one's guard and updates."""
        raise NotImplementedError(f"{type(self).__name__} is not an abstraction")

    # ------------------------------------------------------------------ derived

    def reachability_key(self, state: S) -> Hashable:
        """What identifies ``state`` for "is it reachable?": the state itself, or for an
        abstraction its field values (some reachable state has the same abstraction)."""
        if not self.abstraction:
            return state
        values = self.values(state)
        return tuple(values[f.name] for f in self.fields())

    def fields(self) -> tuple[Field, ...]:
        if self._fields is None:
            self._fields = tuple(self.state_fields())
            names = [f.name for f in self._fields]
            if len(set(names)) != len(names):
                raise ValueError(f"{type(self).__name__}: duplicate field names")
        return self._fields

    def symbolic(self, tag: str = "") -> SymState:
        return SymState(self.fields(), tag)

    def relation(self, action: A, s: SymState, t: SymState) -> z3.BoolRef:
        """``action`` takes ``s`` to ``t``: its guard, its updates, and the frame
        condition that every field it does not update keeps its value."""
        step = self.transition(action, s)
        unknown = set(step.updates) - set(s.vars)
        if unknown:
            raise ValueError(f"{action}: updates unknown field(s) {', '.join(sorted(unknown))}")
        new = step.update_terms(s)
        return z3.And(step.guard, *[t[name] == new.get(name, s[name]) for name in s.vars])

    def next_relation(self, s: SymState, t: SymState) -> z3.BoolRef:
        """Next: some action takes ``s`` to ``t``."""
        return z3.Or(*[self.relation(a, s, t) for a in self.actions()])

    def candidate(self, name: str | None) -> Candidate:
        """The candidate called ``name`` (the default one for None); KeyError names
        the known candidates."""
        candidates = list(self.candidates())
        if name is None:
            return candidates[0]
        for c in candidates:
            if c.name == name:
                return c
        raise KeyError(f"unknown invariant {name!r}; known: {', '.join(c.name for c in candidates)}")


def free_variables(expr: z3.ExprRef) -> list[z3.ExprRef]:
    """The uninterpreted constants (state variables) an expression mentions."""
    seen: dict[int, z3.ExprRef] = {}
    stack = [expr]
    visited: set[int] = set()
    while stack:
        e = stack.pop()
        key = e.get_id()
        if key in visited:
            continue
        visited.add(key)
        if z3.is_const(e) and e.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            seen[key] = e
        else:
            stack.extend(e.children())
    return list(seen.values())


class Evaluator:
    """Evaluates a term over concrete field values with z3 itself (substitute, then
    simplify) and decodes the constant it reduces to into a Python value (a bool
    for a formula, the field's value for a field's term).  Results are remembered by
    the values of the variables the term mentions: guards read a handful of fields,
    so most states hit the memo, which is what makes checking thousands of reachable
    states cheap."""

    def __init__(self, expr: z3.ExprRef, state: SymState, field: str | None = None) -> None:
        self.expr = expr
        self.state = state
        self.field = field  # None: a formula, decoded to bool
        names = {var.get_id(): name for name, var in state.vars.items()}
        self.inputs: list[tuple[str, z3.ExprRef]] = []
        for var in free_variables(expr):
            if var.get_id() not in names:
                raise ValueError(f"{expr} mentions {var}, which is not a field of the state")
            self.inputs.append((names[var.get_id()], var))
        self.memo: dict[tuple[Hashable, ...], Hashable] = {}

    def __call__(self, values: Mapping[str, Hashable]) -> Hashable:
        key = tuple(values[name] for name, _ in self.inputs)
        if key in self.memo:
            return self.memo[key]
        pairs = [(var, self.state.term(name, values[name])) for name, var in self.inputs]
        constant = z3.simplify(z3.substitute(self.expr, *pairs)) if pairs else z3.simplify(self.expr)
        result = bool_value(constant) if self.field is None else self.state.decode(self.field, constant)
        self.memo[key] = result
        return result

    def holds(self, values: Mapping[str, Hashable]) -> bool:
        """The truth of a formula in the state ``values``."""
        result = self(values)
        if not isinstance(result, bool):
            raise TypeError(f"{self.expr} is not a formula")
        return result


class Holds:
    """A formula's truth on concrete states, evaluated one top-level conjunct at a
    time: each conjunct reads a few fields, so each ``Evaluator``'s memo hits, where
    one evaluator of the whole formula would simplify it afresh on every state."""

    def __init__(self, formula: z3.BoolRef, s: SymState) -> None:
        parts, pending = [], [formula]
        while pending:
            f = pending.pop()
            if z3.is_and(f):
                pending.extend(f.children())
            else:
                parts.append(f)
        self.parts = [Evaluator(part, s) for part in parts]

    def __call__(self, values: Mapping[str, Hashable]) -> bool:
        return all(part.holds(values) for part in self.parts)
