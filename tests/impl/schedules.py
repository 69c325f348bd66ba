"""Drawing one controlled-scheduler option from hypothesis: shared by the stateful
tests of every implementation, so all of them explore faults the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st


def draw_option(data: st.DataObject, options: Sequence[Any]) -> int:
    """The index of the option to take.  About one step in twenty is a fault (while
    the fault budget lasts); shrinking the first draw to 0 turns a fault back into
    an ordinary step."""
    ordinary = [i for i, o in enumerate(options) if not o.fault]
    faults = [i for i, o in enumerate(options) if o.fault]
    if faults and (not ordinary or data.draw(st.integers(0, 19), label="fault?") == 19):
        return faults[data.draw(st.integers(0, len(faults) - 1), label="fault")]
    # Modulo a wide range rather than integers(0, n - 1): hypothesis favours the
    # ends of a range, and the last ordinary option is advancing the clock, which
    # would then fire every timeout early.
    return ordinary[data.draw(st.integers(0, 255), label="step") % len(ordinary)]
