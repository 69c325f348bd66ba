"""Where the controlled scheduler's choices come from.

Where it sits: ``impl.runtime.controlled.Simulation`` asks a ``ChoiceSource`` to
pick one of the options enabled at each step (run a thread, deliver a message,
advance the clock, restart a node, or a fault: drop, duplicate, crash).  Every
source is deterministic given its inputs, so a seed (or a list of indices) replays
a schedule exactly.

- ``RandomChoices(seed)``: uniform among ordinary options; a fault with
  probability ``fault_rate`` when one is allowed.
- ``PCTChoices(seed, depth, expected_steps)``: probabilistic concurrency testing
  (Burckhardt, Kothari, Musuvathi, Nagarakatte, ASPLOS 2010).  Every *agent* (a
  thread, a message in flight, the clock) gets a random priority when first seen,
  all above ``depth``; the highest-priority enabled agent always goes next; at
  ``depth - 1`` step numbers drawn uniformly from ``1..expected_steps`` the agent
  that just went drops to priority ``i`` (the i-th change point), below every
  initial priority.  A bug that needs ``depth`` ordering constraints is found with
  probability at least 1/(n·k^(depth-1)) per run.  Treating messages as agents, as
  PCT for message passing does, lets it order deliveries as well as threads.
- ``ReplayChoices(indices)``: a recorded schedule, replayed.
- ``DrawChoices(draw)``: indices from any function ``draw(n) -> 0..n-1``; the
  tests pass hypothesis' ``data.draw``, so failing schedules shrink (index 0 is
  always the most ordinary option, and faults come last).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import attrs


@attrs.frozen
class Choice:
    """One option the scheduler may take next.

    kind: run | deliver | advance | restart | drop | duplicate | crash
    agent: who acts (a thread id, ``msg<seq>`` for a message, ``clock``, a node)
    """

    kind: str
    agent: str
    text: str
    fault: bool = False

    def __str__(self) -> str:
        return self.text


class ChoiceSource(ABC):
    @abstractmethod
    def choose(self, options: Sequence[Choice]) -> int:
        """The index of the option to take; ``options`` is never empty."""


def _split(options: Sequence[Choice]) -> tuple[list[int], list[int]]:
    ordinary = [i for i, o in enumerate(options) if not o.fault]
    faults = [i for i, o in enumerate(options) if o.fault]
    return ordinary, faults


class RandomChoices(ChoiceSource):
    """``clock_weight``: how likely advancing the clock is next to any one other
    ordinary option; below 1 so that timeouts race with messages often but do not
    cut short most runs.  ``heal_weight`` likewise for healing a partition: low, so
    that a partition usually outlasts a failure detector's timeout (a leader cut
    off for a few steps only is never replaced)."""

    def __init__(
        self, seed: int, fault_rate: float = 0.1, clock_weight: float = 0.25, heal_weight: float = 0.02
    ) -> None:
        self.rng = random.Random(seed)
        self.fault_rate = fault_rate
        self.clock_weight = clock_weight
        self.heal_weight = heal_weight

    def choose(self, options: Sequence[Choice]) -> int:
        ordinary, faults = _split(options)
        if faults and (not ordinary or self.rng.random() < self.fault_rate):
            return self.rng.choice(faults)
        weights = [self._weight(options[i].kind) for i in ordinary]
        return self.rng.choices(ordinary, weights)[0]

    def _weight(self, kind: str) -> float:
        if kind == "advance":
            return self.clock_weight
        if kind == "heal":
            return self.heal_weight
        return 1.0


class PCTChoices(ChoiceSource):
    def __init__(self, seed: int, depth: int = 3, expected_steps: int = 200, fault_rate: float = 0.05) -> None:
        if depth < 1:
            raise ValueError(f"PCT depth must be at least 1, got {depth}")
        self.rng = random.Random(seed)
        self.depth = depth
        self.fault_rate = fault_rate
        points = self.rng.sample(range(1, max(expected_steps, depth) + 1), depth - 1)
        # The i-th change point (in step order) lowers its agent to priority i.
        self.change_points = {step: i for i, step in enumerate(sorted(points), start=1)}
        self.priorities: dict[str, float] = {}
        self.steps = 0

    def _priority(self, agent: str) -> float:
        if agent == "clock":
            # Time passes only when no other agent can go: with a high priority the
            # clock would fire retry timers forever and starve the messages they send.
            return 0.0
        if agent not in self.priorities:
            self.priorities[agent] = self.depth + self.rng.random()
        return self.priorities[agent]

    def choose(self, options: Sequence[Choice]) -> int:
        self.steps += 1
        ordinary, faults = _split(options)
        if faults and (not ordinary or self.rng.random() < self.fault_rate):
            return self.rng.choice(faults)
        best = max(ordinary, key=lambda i: self._priority(options[i].agent))
        lowered = self.change_points.get(self.steps)
        if lowered is not None:
            self.priorities[options[best].agent] = float(lowered)
        return best


class ReplayChoices(ChoiceSource):
    """A recorded list of indices; past its end, the first option (the most ordinary)."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = list(indices)
        self.position = 0

    def choose(self, options: Sequence[Choice]) -> int:
        index = self.indices[self.position] if self.position < len(self.indices) else 0
        self.position += 1
        if not 0 <= index < len(options):
            raise ValueError(f"replayed choice {index} at step {self.position} but only {len(options)} options")
        return index


class DrawChoices(ChoiceSource):
    def __init__(self, draw: Callable[[int], int]) -> None:
        self.draw = draw

    def choose(self, options: Sequence[Choice]) -> int:
        return self.draw(len(options))
