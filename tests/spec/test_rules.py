"""The contract's machinery (spec/contract.py): rules, Next, quantifiers, variants.

Every registered spec is checked to agree with itself through the derived functions,
and a toy spec pins down what the machinery does with each part of Next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import pytest

from distcheck.spec.contract import Action, Exists, Invariant, Next, Spec, param, rule, variant
from distcheck.spec.registry import REGISTRY
from tests.spec.test_contract import SPECS, reachable_sample

# --------------------------------------------------------------------- a toy spec


@attrs.frozen
class Counter:
    value: int
    log: tuple[str, ...] = ()


@attrs.frozen
class Inc(Action):
    """Add one."""

    ACTOR = "who"
    who: str


@attrs.frozen
class Add(Action):
    ACTOR = "adder"
    who: str
    amount: int


@attrs.frozen
class Reset(Action):
    pass


@attrs.frozen
class ToyConfig:
    limit: int = param(3, help="largest value")
    variant: str | None = None


class Toy(Spec[Counter, Inc | Add | Reset]):
    name = "toy"

    def __init__(self, config: ToyConfig = ToyConfig()) -> None:
        self.config = config
        self.people = ("ann", "bob")

    def init_states(self) -> Iterable[Counter]:
        yield Counter(0)

    def next(self) -> Next:
        return (
            Exists("who", self.people, self.inc, Exists("amount", self.amounts, self.add)),
            self.reset,
        )

    def amounts(self, s: Counter, who: str) -> Iterable[int]:
        # A domain that depends on the state and on an outer variable.
        return range(2, 4) if who == "ann" else (s.value,)

    @rule(Inc)
    def inc(self, s: Counter, who: str) -> Counter | None:
        """Anyone adds one, up to the limit."""
        if s.value >= self.config.limit:
            return None
        return Counter(s.value + 1, (*s.log, who))

    @rule(Add)
    def add(self, s: Counter, who: str, amount: int) -> Counter | None:
        """Someone adds an amount, up to the limit."""
        if s.value + amount > self.config.limit or amount == 0:
            return None
        return Counter(s.value + amount, (*s.log, who))

    @rule(Reset)
    def reset(self, s: Counter) -> Counter | None:
        """Back to zero from the limit."""
        if s.value != self.config.limit:
            return None
        return Counter(0, s.log)

    def invariants(self) -> Sequence[Invariant[Counter]]:
        return (Invariant("Bounded", "the value never passes the limit", lambda s: s.value <= self.config.limit),)


@variant("overflow", "anyone adds one past the limit", params={"limit": 2})
class Overflow(Toy):
    def inc(self, s: Counter, who: str) -> Counter | None:
        return Counter(s.value + 1, (*s.log, who))


def test_next_order_is_the_order_of_next_and_of_each_domain() -> None:
    toy = Toy()
    assert [str(a) for a in toy.actions(Counter(0))] == [
        "Inc(ann)",
        "Add(ann, 2)",
        "Add(ann, 3)",
        "Inc(bob)",  # bob's Add ranges over (0,), which the guard refuses
    ]
    assert [str(a) for a in toy.actions(Counter(1))] == ["Inc(ann)", "Add(ann, 2)", "Inc(bob)", "Add(bob, 1)"]
    assert [str(a) for a in toy.actions(Counter(3))] == ["Reset"]


def test_next_state_checks_every_parameter_against_its_domain() -> None:
    toy = Toy()
    assert toy.next_state(Counter(0), Inc("ann")) == Counter(1, ("ann",))
    assert toy.next_state(Counter(0), Inc("eve")) is None  # not one of the people
    assert toy.next_state(Counter(1), Add("bob", 1)) == Counter(2, ("bob",))
    assert toy.next_state(Counter(0), Add("bob", 1)) is None  # bob's domain is (0,) here
    assert toy.next_state(Counter(0), Add("ann", 1)) is None  # ann's domain is 2..3
    assert toy.next_state(Counter(0), Inc(["not", "hashable"])) is None  # type: ignore[arg-type]
    assert toy.next_state(Counter(0), Reset()) is None  # the guard


def test_successors_actions_and_next_state_agree() -> None:
    toy = Toy()
    for value in range(4):
        s = Counter(value)
        pairs = toy.successors(s)
        assert [a for a, _ in pairs] == toy.actions(s)
        for a, t in pairs:
            assert toy.next_state(s, a) == t


def test_actor_is_the_named_field_or_the_literal() -> None:
    assert Inc("bob").actor == "bob"
    assert Add("ann", 2).actor == "adder"  # no field called adder: a literal name
    assert Reset().actor == "env"  # the default


def test_rule_statement_is_the_docstring_of_its_rule() -> None:
    toy = Toy()
    info = toy.rule_of(Inc("ann"))
    assert info is not None and (info.name, info.statement, info.method) == (
        "Inc",
        "Anyone adds one, up to the limit.",
        "inc",
    )
    assert toy.rule_of(object()) is None
    assert [r.name for r in toy.rules()] == ["Inc", "Add", "Reset"]
    # A variant's override without a docstring keeps the reference's statement.
    over = Toy(ToyConfig(variant="overflow"))
    overridden = over.rule_of(Inc("ann"))
    assert overridden is not None and overridden.statement == info.statement


def test_a_variant_is_built_from_its_name_and_overrides_only_its_rule() -> None:
    over = Toy(ToyConfig(variant="overflow"))
    assert isinstance(over, Overflow) and isinstance(over, Toy)
    assert over.variant == "overflow" and Toy().variant is None
    assert over.next_state(Counter(3), Inc("ann")) == Counter(4, ("ann",))
    assert over.next_state(Counter(3), Add("ann", 2)) is None  # untouched rule
    info = Toy.variants()["overflow"]
    assert (info.description, info.changes, dict(info.params)) == (
        "anyone adds one past the limit",
        ("inc",),
        {"limit": 2},
    )


def test_an_unknown_variant_fails_at_construction() -> None:
    with pytest.raises(ValueError, match=r"unknown variant 'overflwo' of toy; known: overflow"):
        Toy(ToyConfig(variant="overflwo"))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_spec_refuses_an_unknown_variant(name: str) -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        REGISTRY[name].build(REGISTRY[name].config_type(variant="no_such_variant"))


def test_next_must_bind_exactly_the_fields_of_each_rule() -> None:
    class Unbound(Toy):
        def next(self) -> Next:
            return (self.inc,)  # Inc(who) outside any Exists("who")

    with pytest.raises(TypeError, match=r"Inc\(who\) sits inside Exists over \(\)"):
        Unbound()

    class NotARule(Toy):
        def helper(self, s: Counter) -> Counter | None:
            return s

        def next(self) -> Next:
            return (self.helper,)

    with pytest.raises(TypeError, match="helper, which is not a @rule method"):
        NotARule()

    class Twice(Toy):
        def next(self) -> Next:
            return (self.reset, self.reset)

    with pytest.raises(TypeError, match="names the rule of Reset twice"):
        Twice()


def test_a_rule_must_take_its_records_fields_in_order() -> None:
    class Swapped(Toy):
        @rule(Add)
        def add(self, s: Counter, amount: int, who: str) -> Counter | None:  # type: ignore[override]
            return None

    with pytest.raises(TypeError, match=r"rule add takes \(amount, who\) but Add has fields \(who, amount\)"):
        Swapped()


def test_variant_must_decorate_a_subclass_and_names_are_unique() -> None:
    with pytest.raises(TypeError, match="must decorate a subclass of a spec"):
        variant("x", "y")(Toy)
    with pytest.raises(ValueError, match="declares variant 'overflow' twice"):

        @variant("overflow", "again")
        class Again(Toy):
            pass


# ------------------------------------------------------ every spec, derived parts


@pytest.mark.parametrize("spec", SPECS)
def test_next_state_refuses_exactly_what_actions_does_not_offer(spec: Spec[Any, Any]) -> None:
    """Every action enabled somewhere in the sample is tried in every sampled state:
    next_state must be defined exactly where actions() offers it."""
    states = reachable_sample(spec, 150)
    universe: dict[Any, None] = {}
    for s in states:
        for a in spec.actions(s):
            universe.setdefault(a)
    for s in states:
        offered = set(spec.actions(s))
        for a in universe:
            assert (spec.next_state(s, a) is not None) == (a in offered), f"{a} in {s}"


@pytest.mark.parametrize("spec", SPECS)
def test_every_rule_of_next_fires_somewhere_or_is_a_variants_hook(spec: Spec[Any, Any]) -> None:
    """A rule that never fires at the default size is dead text in the reference.
    (The sample is large: Raft's first leader is nine steps deep.)"""
    sample = reachable_sample(spec, 3000)
    fired = {type(a).__name__ for s in sample for a in spec.actions(s)}
    for info in spec.rules():
        assert info.name in fired, f"{spec.name}: {info.name} never fires at the default size"
        assert info.statement, f"{spec.name}: rule {info.method} has no one-line statement"


@attrs.frozen
class Triple(Action):
    a: str
    b: int
    c: int


@attrs.frozen
class Quad(Action):
    a: str
    b: int
    c: int
    d: int


class Wide(Spec[Counter, Triple | Quad]):
    """Rules of three and four fields (the machinery has a path for each size)."""

    name = "wide"

    def init_states(self) -> Iterable[Counter]:
        yield Counter(0)

    def next(self) -> Next:
        return (
            Exists(
                "a",
                ("x",),
                Exists("b", (1, 2), Exists("c", (0, 1), self.triple, Exists("d", (5,), self.quad))),
            ),
        )

    @rule(Triple)
    def triple(self, s: Counter, a: str, b: int, c: int) -> Counter | None:
        """Add b when c is set, below 3."""
        return Counter(s.value + b) if c and s.value + b <= 3 else None

    @rule(Quad)
    def quad(self, s: Counter, a: str, b: int, c: int, d: int) -> Counter | None:
        """Jump to 3 from 0 when b is 2."""
        return Counter(3) if s.value == 0 and b == 2 and not c else None

    def invariants(self) -> Sequence[Invariant[Counter]]:
        return ()


def test_rules_of_three_and_four_fields() -> None:
    wide = Wide()
    assert [str(a) for a in wide.actions(Counter(0))] == ["Triple(x, 1, 1)", "Quad(x, 2, 0, 5)", "Triple(x, 2, 1)"]
    assert wide.next_state(Counter(0), Triple("x", 2, 1)) == Counter(2)
    assert wide.next_state(Counter(0), Triple("x", 2, 0)) is None  # the guard
    assert wide.next_state(Counter(0), Quad("x", 2, 0, 5)) == Counter(3)
    assert wide.next_state(Counter(0), Quad("x", 2, 0, 6)) is None  # d outside its domain
    assert wide.actions(Counter(3)) == []


def test_the_default_optional_parts() -> None:
    toy = Toy()
    assert not toy.has_symmetry() and toy.canonical(Counter(2)) == Counter(2)
    assert toy.within_bounds(Counter(99)) and toy.refinement() is None and toy.reachable() == ()
    assert toy.observe(Counter(0), Inc("ann")) == {"actor": "ann", "action": {"type": "Inc", "who": "ann"}}

    class Symmetric(Toy):
        def canonical(self, s: Counter) -> Counter:
            return Counter(s.value)

    assert Symmetric().has_symmetry()
    # The default bounds let the explorer see every state: Wide reaches 0, 1, 2 and 3.
    from distcheck.checks.search.explore import explore

    assert explore(Wide()).stats.distinct_states == 4
