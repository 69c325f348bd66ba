"""What every protocol module configures the same way: its broken variants and its
timing.

Where it sits: ``impl/twophase.py``, ``impl/paxos.py`` and the lock service name
their deliberately broken variants in a dict (name → what is broken) and check a
requested one with ``check_variant``; each subclasses ``Timing`` with its own
durations, which are then checked once, here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs


def check_variant(variant: str | None, variants: Mapping[str, str], kind: str = "variant") -> None:
    """ValueError naming the allowed variants unless ``variant`` is None or one of them."""
    if variant is not None and variant not in variants:
        raise ValueError(f"unknown {kind} {variant!r}; allowed: {', '.join(variants)}")


@attrs.frozen
class Timing:
    """A protocol's durations, in seconds on the node's clock (virtual in controlled
    mode).  Subclasses declare the fields (attrs frozen); every one must be a finite
    number, not negative."""

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{type(self).__name__}.{field.name} must be a finite number >= 0, got {value!r}")
