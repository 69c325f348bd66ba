"""Following a spec by hand in tests: a pinned action list replayed from the initial
state, and the invariants a state breaks.  Shared by the spec tests, which pin
counterexamples and check rules on hand-built states."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from distcheck.spec.contract import Spec

S = TypeVar("S")


def replay(spec: Spec[S, Any], actions: Sequence[Any]) -> S:
    """The state after ``actions`` from the (first) initial state; each must be enabled."""
    state = next(iter(spec.init_states()))
    for a in actions:
        nxt = spec.next_state(state, a)
        assert nxt is not None, f"{a} is not enabled in {state}"
        state = nxt
    return state


def broken(spec: Spec[S, Any], state: S) -> list[str]:
    """The names of the invariants ``state`` breaks, in the spec's order."""
    return [inv.name for inv in spec.invariants() if not inv.holds(state)]
