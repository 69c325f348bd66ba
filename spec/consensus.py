"""Consensus: the problem every consensus protocol solves, stated as a spec.

Some processes propose values and at most one value may ever be chosen; once
chosen it stays chosen.  This spec has no processes, no messages and no ballots:
its only variable is ``chosen``, the set of chosen values, and its only step
chooses one value while none is chosen.  It is the top of the refinement chain
Paxos ⇒ Voting ⇒ Consensus (``spec/paxos.py``, ``spec/voting.py``): every step of
those protocols maps either to this step or to a stutter.

Sources: L. Lamport, "Paxos Made Simple" (2001), section 2.1 (the safety
requirements); Lamport's TLA+ module Consensus from the lecture "The Paxos
Algorithm, or How to Win a Turing Award" (2019).  With 2 values TLC finds 3
distinct states (3 generated, depth 2); this module finds the same.

State: ``chosen`` (a set of values, initially empty).

Actions
    Choose(val)   With nothing chosen yet, ``val`` becomes the chosen value.

Invariants
    TypeOK      ``chosen`` is a set of values.
    Agreement   at most one value is chosen.
    Validity    only a value that may be proposed is chosen (chosen ⊆ Value).

Reachable
    ValueChosen some value is chosen.

No variants: a broken Consensus would be a broken problem statement, not a
protocol mistake.  The protocol specs carry the variants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule


def value_names(n: int) -> tuple[str, ...]:
    """The values proposers may propose: v1, v2, ... (TLA+'s constant Value)."""
    return tuple(f"v{i}" for i in range(1, n + 1))


@attrs.frozen
class ConsensusState:
    chosen: frozenset[str]


@attrs.frozen
class Choose(Action):
    """``val`` becomes the chosen value; enabled only while nothing is chosen."""

    ACTOR = "consensus"
    val: str


@attrs.frozen
class ConsensusConfig:
    values: int = param(2, help="number of values that may be proposed", minimum=1, maximum=9)
    variant: str | None = None


class Consensus(Spec[ConsensusState, Choose]):
    name = "consensus"

    def __init__(self, config: ConsensusConfig = ConsensusConfig()) -> None:
        self.config = config
        self.values = value_names(config.values)

    def init_states(self) -> Iterable[ConsensusState]:
        yield ConsensusState(frozenset())

    def next(self) -> Next:
        return (Exists("val", self.values, self.choose),)

    @rule(Choose)
    def choose(self, s: ConsensusState, val: str) -> ConsensusState | None:
        """With nothing chosen yet, ``val`` becomes the chosen value."""
        if s.chosen:
            return None
        return ConsensusState(frozenset({val}))

    def invariants(self) -> Sequence[Invariant[ConsensusState]]:
        return (
            Invariant("TypeOK", "chosen is a set of values", lambda s: all(isinstance(v, str) for v in s.chosen)),
            Invariant("Agreement", "at most one value is chosen", lambda s: agreement(s.chosen)),
            Invariant(
                "Validity",
                "only a value that may be proposed is chosen",
                lambda s: s.chosen <= frozenset(self.values),
            ),
        )

    def reachable(self) -> Sequence[Reachable[ConsensusState]]:
        return (Reachable("ValueChosen", "some value is chosen", lambda s: bool(s.chosen)),)


def agreement(chosen: frozenset[str]) -> bool:
    """Consensus's safety property, shared by every spec that refines it."""
    return len(chosen) <= 1
