"""Consensus: its one rule's guard and effect, each invariant, and its reachability
property, on hand-built states (parity with TLC is in test_paxos.py)."""

from __future__ import annotations

from distcheck.checks.search.explore import explore
from distcheck.spec.consensus import Choose, Consensus, ConsensusState


def chosen(*values: str) -> ConsensusState:
    return ConsensusState(frozenset(values))


def failing(spec: Consensus, s: ConsensusState) -> list[str]:
    return [inv.name for inv in spec.invariants() if not inv.holds(s)]


def test_choose_is_enabled_exactly_while_nothing_is_chosen() -> None:
    spec = Consensus()
    assert spec.next_state(chosen(), Choose("v2")) == chosen("v2")
    assert spec.actions(chosen()) == [Choose("v1"), Choose("v2")]
    assert spec.next_state(chosen("v1"), Choose("v2")) is None
    assert spec.next_state(chosen("v1"), Choose("v1")) is None
    assert spec.actions(chosen("v1")) == []
    assert spec.next_state(chosen(), Choose("v3")) is None  # not a value that may be proposed


def test_each_invariant_on_hand_built_states() -> None:
    spec = Consensus()
    assert failing(spec, chosen("v1")) == []
    assert failing(spec, chosen("v1", "v2")) == ["Agreement"]
    assert failing(spec, chosen("v3")) == ["Validity"]
    # A value that is no value is outside Value too, so Validity also fails.
    type_ok = next(inv for inv in spec.invariants() if inv.name == "TypeOK")
    assert not type_ok.holds(ConsensusState(frozenset({1})))  # type: ignore[arg-type]


def test_value_chosen_is_reached_and_means_a_value_is_chosen() -> None:
    spec = Consensus()
    (value_chosen,) = spec.reachable()
    assert value_chosen.name == "ValueChosen"
    assert value_chosen.holds(chosen("v2")) and not value_chosen.holds(chosen())
    assert explore(spec).reached == ("ValueChosen",)
