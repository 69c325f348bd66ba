"""The spec contract: what every distcheck specification is.

Where it sits: every module in ``spec/`` builds on this one, and ``checks/`` (the
explorer, the hypothesis harness, traces, validation) talks to a spec only through
what is defined here.  It imports nothing but the standard library, attrs and the
value and codec modules beside it.

A spec is a value with four functions, in the spirit of TLA+'s Init/Next/Invariants
and Stateright's ``Model``::

    init_states() -> Iterable[State]
    actions(state) -> list[Action]              every enabled action, faults included
    next_state(state, action) -> State | None   pure; None means "not enabled"
    invariants() -> Sequence[Invariant]         named predicates true in every state

and, optionally, ``reachable()`` (properties that must hold in *some* state, so that
a vacuous spec cannot pass), ``canonical(state)`` (symmetry reduction),
``within_bounds(state)`` (a state constraint like TLC's CONSTRAINT),
``observe(state, action)`` (the trace event an implementation would log for a step)
and ``refinement()`` (a mapping to a more abstract spec).

**One rule per action.**  A spec author does not write ``actions`` and
``next_state``: they are derived.  Each action is one method marked ``@rule(Record)``
whose parameters are the record's fields, holding its guard and its effect once, as
a TLA+ operator does: it returns the next state, or None where the guard fails.  The
spec's ``next()`` is TLA+'s Next, the disjunction of its rules with their
quantifiers::

    def next(self) -> Next:
        return (
            self.tm_commit,
            Exists("rm", self.rms, self.rm_prepare, self.rm_choose_to_abort),
        )

From it the machinery enumerates the enabled actions in a fixed order (the order of
``next()``, each domain in its given order) and answers ``next_state`` for an action
from anywhere (a trace, a hypothesis rule) by checking its parameters against their
domains and calling its rule.  A domain is a collection, or a function of the state
(and of the variables bound around it, by name) for quantifiers over what the state
holds, such as the messages sent.

**Variants** are subclasses of the spec that override the rules (or helpers) they
break, marked ``@variant(name, one line, params=size at which it shows)``; the
reference rules read without them.  ``Spec(Config(variant=name))`` builds the
variant's class, and an unknown name is an error there, for every spec.

**Actors.**  A step's actor is its record's ``actor``: the field named by the
record's ``ACTOR`` (``ACTOR = "rm"``), or ``ACTOR`` itself when no field has that
name (``ACTOR = "tm"``); a record whose actor is computed overrides ``actor``.
"""

from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import attrs

from distcheck.spec.codec import from_json, to_json, value_types
from distcheck.spec.values import field_names, short_text

S = TypeVar("S")  # a spec's state type
A = TypeVar("A")  # a spec's action type
AS = TypeVar("AS")  # an abstract spec's state type
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T", bound=type)

# ------------------------------------------------------------------------- actions


class Action:
    """Base for action records: a named step with its parameters.

    Subclasses are attrs frozen classes.  ``actor`` names the node that takes the
    step (see ``ACTOR``); ``str()`` is the short form used in step tables, e.g.
    ``RMPrepare(r1)``.
    """

    __slots__ = ()

    #: The field that holds the step's actor, or else the actor's own name.
    ACTOR: ClassVar[str] = "env"

    @property
    def actor(self) -> str:
        name = type(self).ACTOR
        if name in field_names(type(self)):
            return str(getattr(self, name))
        return name

    def __str__(self) -> str:
        names = field_names(type(self)) if attrs.has(type(self)) else ()
        args = ", ".join(short_text(getattr(self, n)) for n in names)
        return f"{type(self).__name__}({args})" if args else type(self).__name__


# --------------------------------------------------------------------- properties


@attrs.frozen
class Invariant(Generic[S]):
    """A named property that must hold in every reachable state ("always")."""

    name: str
    statement: str  # one line of English
    holds: Callable[[S], bool] = attrs.field(eq=False)


@attrs.frozen
class StepProperty(Generic[S]):
    """A named property of every step ("always, of each step": TLA+'s ``[][P]_vars``),
    a predicate of a state and its successor, such as "a leader's log only grows"."""

    name: str
    statement: str  # one line of English
    holds: Callable[[S, S], bool] = attrs.field(eq=False)


@attrs.frozen
class Reachable(Generic[S]):
    """A named property that must hold in some reachable state ("sometimes").

    A check fails when it is never reached, so an invariant that holds only because
    nothing interesting ever happens cannot pass unnoticed.
    """

    name: str
    statement: str
    holds: Callable[[S], bool] = attrs.field(eq=False)


@attrs.frozen
class Eventually(Generic[S]):
    """A named liveness property: every behaviour eventually reaches a state where it
    holds, if every step that stays enabled is eventually taken (strong fairness of
    each step; faults are bounded by the spec's own budgets).

    On a finite state graph that is the same as "from every reachable state, a state
    where it holds is still reachable": a behaviour that never gets there would pass
    some state infinitely often, and, taking each of its steps infinitely often, walk
    the path from it to the goal.  So the check needs no temporal logic: the explorer
    keeps the graph's edges and searches it backwards from the goal states.
    """

    name: str
    statement: str
    holds: Callable[[S], bool] = attrs.field(eq=False)


@attrs.frozen
class Refinement(Generic[S, AS]):
    """``spec`` refines ``abstract`` under ``mapping``: every step of ``spec`` maps to a
    step of ``abstract`` or to a stutter (the abstract state unchanged)."""

    abstract: Spec[AS, Any]
    mapping: Callable[[S], AS] = attrs.field(eq=False)


# -------------------------------------------------------------------------- rules


def rule(action: type) -> Callable[[F], F]:
    """Mark a method as the rule of ``action``: its guard and its effect, once.

    The method's parameters after the state are the record's fields, in order; it
    returns the next state, or None when the step is not enabled.  Its docstring's
    first line is the rule's statement, quoted when a trace breaks it.
    """

    def mark(method: F) -> F:
        method.__rule_action__ = action  # type: ignore[attr-defined]
        return method

    return mark


@attrs.frozen
class RuleInfo:
    """What a rule is, for people: the action it governs and its one-line statement."""

    name: str
    statement: str
    method: str


class Exists:
    """TLA+'s ``\\E var \\in domain : body``: each disjunct of ``body`` once for every
    value of ``domain``, in the domain's order."""

    __slots__ = ("body", "domain", "params", "var")

    def __init__(self, var: str, domain: Iterable[Any] | Callable[..., Iterable[Any]], *body: Disjunct) -> None:
        if not body:
            raise ValueError(f"Exists({var!r}) has no disjuncts")
        self.var = var
        self.domain: tuple[Any, ...] | Callable[..., Iterable[Any]] = domain if callable(domain) else tuple(domain)
        self.body = body
        #: for a domain that is a function of the state: the bound variables it takes
        self.params: tuple[str, ...] = ()


#: One disjunct of Next: a rule (a bound method marked ``@rule``) or a quantifier.
Disjunct = Callable[..., Any] | Exists
Next = Sequence[Disjunct]


@attrs.frozen
class VariantInfo:
    """A deliberately broken version of a spec: a historical mistake the checks catch."""

    name: str
    description: str  # one line
    cls: type
    #: the parameters at which its mistake shows, where the defaults do not suit
    params: Mapping[str, Any] = attrs.field(factory=dict)
    #: a pinned counterexample (each action as ``str`` shows it), for a mistake whose
    #: shortest counterexample lies beyond what an exhaustive search covers quickly;
    #: ``distcheck check all`` and the tests replay it instead of searching
    witness: tuple[str, ...] = ()

    @property
    def changes(self) -> tuple[str, ...]:
        """The rules and helpers this variant overrides (derived, never restated)."""
        return tuple(name for name, value in vars(self.cls).items() if callable(value) and not name.startswith("__"))


def variant(
    name: str, description: str, *, params: Mapping[str, Any] | None = None, witness: Sequence[str] = ()
) -> Callable[[T], T]:
    """Declare a subclass of a spec as its variant ``name`` (one line of English;
    ``params``: the size at which the mistake shows; ``witness``: a pinned
    counterexample, where searching for the shortest takes too long)."""

    def register(cls: T) -> T:
        if not issubclass(cls, Spec) or cls.__bases__[0] is Spec:
            raise TypeError(f"@variant({name!r}) must decorate a subclass of a spec")
        reference = _reference_of(cls.__bases__[0])
        table: dict[str, VariantInfo] = reference.__dict__.get("_variants") or {}
        if name in table:
            raise ValueError(f"{reference.__name__} declares variant {name!r} twice")
        table[name] = VariantInfo(name, description, cls, dict(params or {}), tuple(witness))
        reference._variants = table
        cls.variant_name = name
        return cls

    return register


def _reference_of(cls: type) -> Any:
    """The reference spec a class is (itself) or varies (its nearest non-variant base)."""
    for klass in cls.__mro__:
        if "variant_name" not in vars(klass):
            return klass
    raise TypeError(f"{cls.__name__} has no reference spec")  # pragma: no cover - object has none


# ------------------------------------------------------------------- compiled Next

_Collect = Callable[[Any, dict[str, Any], list[tuple[Any, Any]]], None]


@attrs.frozen
class _Bound:
    """Where a rule sits in Next: its method, its record, and the quantifiers around it."""

    method: Callable[..., Any]
    action: type
    fields: tuple[str, ...]
    quantifiers: tuple[Exists, ...]


class SpecMeta(ABCMeta):
    """Builds the variant a config names, and compiles Next once per spec value."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        config = args[0] if args else kwargs.get("config")
        wanted = getattr(config, "variant", None)
        target: Any = cls
        if wanted is not None and getattr(cls, "variant_name", None) != wanted:
            table = _reference_of(cls).__dict__.get("_variants") or {}
            info = table.get(wanted)
            if info is None:
                known = ", ".join(table) or "none"
                raise ValueError(
                    f"unknown variant {wanted!r} of {getattr(cls, 'name', '') or cls.__name__}; known: {known}"
                )
            target = info.cls
        spec = super(SpecMeta, target).__call__(*args, **kwargs)
        spec._compile_next()
        return spec


class Spec(Generic[S, A], metaclass=SpecMeta):
    """A specification: initial states, Next as rules, and named invariants.

    Subclasses fill in ``init_states``, ``next`` and ``invariants`` and write one
    ``@rule`` method per action; ``actions``, ``next_state`` and ``successors`` are
    derived from them.
    """

    #: Registry name, e.g. "twophase"; set by each subclass.
    name: ClassVar[str] = ""
    #: On a variant class, the variant's name (set by ``@variant``).
    variant_name: ClassVar[str | None] = None
    _variants: ClassVar[dict[str, VariantInfo]]

    _collect: _Collect
    _rules: dict[type, _Bound]

    def __init__(self, config: Any = None) -> None:
        #: The parameters this spec was built from (usually an attrs ``Config``).
        self.config = config

    @abstractmethod
    def init_states(self) -> Iterable[S]: ...

    @abstractmethod
    def next(self) -> Next:
        """TLA+'s Next: the rules, with the quantifiers that bind their parameters."""

    @abstractmethod
    def invariants(self) -> Sequence[Invariant[S]]: ...

    # ----------------------------------------------------------- derived from Next

    @property
    def variant(self) -> str | None:
        """The variant this spec is, or None for the reference."""
        return type(self).variant_name

    @classmethod
    def variants(cls) -> Mapping[str, VariantInfo]:
        """Every declared variant of this spec, by name, in declaration order."""
        return dict(_reference_of(cls).__dict__.get("_variants") or {})

    def successors(self, state: S) -> list[tuple[A, S]]:
        """Every enabled (action, next state) pair, in Next's order."""
        out: list[tuple[A, S]] = []
        self._collect(state, {}, out)
        return out

    def actions(self, state: S) -> list[A]:
        """Every action enabled in ``state``, in a fixed order (same in every process)."""
        return [action for action, _ in self.successors(state)]

    def next_state(self, state: S, action: A) -> S | None:
        """The state after ``action``, or None when it is not enabled.  Pure."""
        bound = self._rules.get(type(action))
        if bound is None:
            return None
        env = {f: getattr(action, f) for f in bound.fields}
        for q in bound.quantifiers:
            domain = q.domain if isinstance(q.domain, tuple) else q.domain(state, *[env[p] for p in q.params])
            try:
                if env[q.var] not in domain:
                    return None
            except TypeError:  # an unhashable value from outside (a trace) is in no domain
                return None
        result: S | None = bound.method(state, *env.values())
        return result

    def rule_of(self, action: object) -> RuleInfo | None:
        """The rule that governs ``action`` (None for an action this spec has no rule for)."""
        bound = self._rules.get(type(action))
        return None if bound is None else _rule_info(bound)

    def rules(self) -> list[RuleInfo]:
        """Every rule of Next, in Next's order."""
        return [_rule_info(bound) for bound in self._rules.values()]

    def _compile_next(self) -> None:
        rules: dict[type, _Bound] = {}
        self._collect = _compile(self, tuple(self.next()), (), rules)
        self._rules = rules

    # --------------------------------------------------------------- optional parts

    def reachable(self) -> Sequence[Reachable[S]]:
        return ()

    def step_properties(self) -> Sequence[StepProperty[S]]:
        """Properties of every step, checked on each (state, successor) the search computes."""
        return ()

    def eventually(self) -> Sequence[Eventually[S]]:
        """Liveness properties (``Eventually``), checked on the whole explored graph."""
        return ()

    def canonical(self, state: S) -> S:
        """A representative of the state's symmetry class (identity by default)."""
        return state

    def has_symmetry(self) -> bool:
        return type(self).canonical is not Spec.canonical

    def within_bounds(self, state: S) -> bool:
        """A state constraint: successors of a state out of bounds are not explored."""
        return True

    def refinement(self) -> Refinement[S, Any] | None:
        return None

    def observe(self, state: S, action: A) -> Mapping[str, Any] | None:
        """The trace event an implementation logs for this step (None: not logged)."""
        return {"actor": getattr(action, "actor", "env"), "action": to_json(action)}

    def value_types(self) -> Mapping[str, type]:
        """The classes that may appear in this spec's JSON (actions, messages, ...)."""
        import sys

        modules = [sys.modules[klass.__module__] for klass in type(self).__mro__ if issubclass(klass, Spec)]
        return value_types(*modules)

    def action_from_json(self, data: Any) -> A:
        return from_json(data, self.value_types())  # type: ignore[no-any-return]


def _rule_info(bound: _Bound) -> RuleInfo:
    doc = inspect.getdoc(bound.method) or inspect.getdoc(bound.action) or ""
    return RuleInfo(bound.action.__name__, " ".join(doc.split("\n\n")[0].split()), bound.method.__name__)


def _rule_action(spec: Spec[Any, Any], method: Callable[..., Any]) -> type:
    """The record a bound method governs, looked up through the spec's classes so that
    a variant's override (which need not repeat ``@rule``) governs the same record."""
    name = getattr(method, "__name__", "")
    for klass in type(spec).__mro__:
        candidate = vars(klass).get(name)
        action = getattr(candidate, "__rule_action__", None)
        if action is not None:
            return action  # type: ignore[no-any-return]
    raise TypeError(f"{type(spec).__name__}.next() names {name or repr(method)}, which is not a @rule method")


def _compile(
    spec: Spec[Any, Any], body: tuple[Disjunct, ...], around: tuple[Exists, ...], rules: dict[type, _Bound]
) -> _Collect:
    parts: list[_Collect] = []
    for disjunct in body:
        if isinstance(disjunct, Exists):
            parts.append(_compile_exists(spec, disjunct, around, rules))
        else:
            parts.append(_compile_rule(spec, disjunct, around, rules))
    if len(parts) == 1:
        return parts[0]

    def collect(state: Any, env: dict[str, Any], out: list[tuple[Any, Any]]) -> None:
        for part in parts:
            part(state, env, out)

    return collect


def _compile_exists(spec: Spec[Any, Any], q: Exists, around: tuple[Exists, ...], rules: dict[type, _Bound]) -> _Collect:
    if any(o.var == q.var for o in around):
        raise TypeError(f"{type(spec).__name__}.next(): Exists({q.var!r}) inside another Exists({q.var!r})")
    inner = _compile(spec, q.body, (*around, q), rules)
    var = q.var
    domain = q.domain
    if isinstance(domain, tuple):
        values = domain

        def collect_static(state: Any, env: dict[str, Any], out: list[tuple[Any, Any]]) -> None:
            for value in values:
                env[var] = value
                inner(state, env, out)

        return collect_static
    params = tuple(inspect.signature(domain).parameters)[1:]
    unknown = [p for p in params if p not in {o.var for o in around}]
    if unknown:
        raise TypeError(f"{type(spec).__name__}.next(): the domain of {var!r} takes unbound {', '.join(unknown)}")
    q.params = params
    function = domain

    def collect_dynamic(state: Any, env: dict[str, Any], out: list[tuple[Any, Any]]) -> None:
        for value in function(state, *[env[p] for p in params]):
            env[var] = value
            inner(state, env, out)

    return collect_dynamic


def _compile_rule(
    spec: Spec[Any, Any], method: Callable[..., Any], around: tuple[Exists, ...], rules: dict[type, _Bound]
) -> _Collect:
    action = _rule_action(spec, method)
    fields = field_names(action)
    params = tuple(inspect.signature(method).parameters)[1:]
    if params != fields:
        raise TypeError(
            f"rule {method.__name__} takes ({', '.join(params)}) but {action.__name__} has fields ({', '.join(fields)})"
        )
    bound_vars = {q.var for q in around}
    if set(fields) != bound_vars:
        raise TypeError(
            f"{type(spec).__name__}.next(): {action.__name__}({', '.join(fields)}) sits inside "
            f"Exists over ({', '.join(q.var for q in around)})"
        )
    if action in rules:
        raise TypeError(f"{type(spec).__name__}.next() names the rule of {action.__name__} twice")
    # Quantifiers in the record's field order, so next_state checks them as Next binds them.
    rules[action] = _Bound(method, action, fields, around)
    if not fields:

        def collect0(state: Any, env: dict[str, Any], out: list[tuple[Any, Any]]) -> None:
            nxt = method(state)
            if nxt is not None:
                out.append((action(), nxt))

        return collect0
    if len(fields) == 1:
        (f1,) = fields

        def collect1(state: Any, env: dict[str, Any], out: list[tuple[Any, Any]]) -> None:
            x = env[f1]
            nxt = method(state, x)
            if nxt is not None:
                out.append((action(x), nxt))

        return collect1

    if len(fields) == 2:
        f1, f2 = fields

        def collect2(state: Any, env: dict[str, Any], out: list[tuple[Any, Any]]) -> None:
            x, y = env[f1], env[f2]
            nxt = method(state, x, y)
            if nxt is not None:
                out.append((action(x, y), nxt))

        return collect2
    if len(fields) == 3:
        f1, f2, f3 = fields

        def collect3(state: Any, env: dict[str, Any], out: list[tuple[Any, Any]]) -> None:
            x, y, z = env[f1], env[f2], env[f3]
            nxt = method(state, x, y, z)
            if nxt is not None:
                out.append((action(x, y, z), nxt))

        return collect3

    def collect(state: Any, env: dict[str, Any], out: list[tuple[Any, Any]]) -> None:
        args = [env[f] for f in fields]
        nxt = method(state, *args)
        if nxt is not None:
            out.append((action(*args), nxt))

    return collect


def param(default: Any, *, help: str, minimum: int | None = None, maximum: int | None = None) -> Any:
    """A Config field that the CLI exposes as ``-p NAME=VALUE``."""
    return attrs.field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum})
