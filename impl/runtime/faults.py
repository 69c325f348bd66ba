"""Generic fault injectors a protocol's checks can wrap around the runtime: a node
whose clock runs slow, and process pauses.

Where it sits: between the runtime and a protocol's nodes or the scheduler's choice
source, without the protocol knowing.  ``SlowClock`` wraps a node's ``Context``;
``PausingChoices`` wraps a ``ChoiceSource`` of the controlled scheduler.  The lock
service's wiring (``checks/conformance/wiring/lock.py``) uses both: its clients
budget for bounded clock drift and must survive pauses.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from distcheck.impl.runtime.api import Context, ContextWrapper, Queue, Received
from distcheck.impl.runtime.strategies import Choice, ChoiceSource


class SlowClock(ContextWrapper):
    """A node's context whose clock runs at ``rate`` (at most 1: slow) of the
    runtime's, for every timing call (now, sleep, timeouts, timers, queue waits): the
    bounded clock drift of spec/lock.py, injected without the node knowing."""

    def __init__(self, inner: Context, rate: float) -> None:
        super().__init__(inner)
        self.rate = rate
        self.origin = inner.now()

    def at(self, runtime_time: float) -> float:
        """This clock's reading when the runtime's clock reads ``runtime_time``."""
        return self.origin + (runtime_time - self.origin) * self.rate

    def _span(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds / self.rate

    def receive(self, timeout: float | None = None) -> Received | None:
        return self.inner.receive(self._span(timeout))

    def set_timer(self, name: str, delay: float) -> None:
        self.inner.set_timer(name, delay / self.rate)

    def now(self) -> float:
        return self.at(self.inner.now())

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds / self.rate)

    def queue(self) -> Queue:
        return _SlowQueue(self.inner.queue(), self)


class _SlowQueue(Queue):
    def __init__(self, inner: Queue, clock: SlowClock) -> None:
        self.inner = inner
        self.clock = clock

    def put(self, item: Any) -> None:
        self.inner.put(item)

    def get(self, timeout: float | None = None) -> Any | None:
        return self.inner.get(self.clock._span(timeout))


class PausingChoices(ChoiceSource):
    """Process pauses (a long garbage collection): now and then the scheduler
    freezes every thread of one client node while the clock advances ``advances``
    times, then lets it go on as if nothing happened.  Messages keep moving."""

    def __init__(
        self,
        inner: ChoiceSource,
        nodes: Sequence[str],
        rng: random.Random,
        rate: float = 0.02,
        advances: tuple[int, int] = (1, 6),
        at_send_rate: float = 0.1,
    ) -> None:
        self.inner = inner
        self.at_send_rate = at_send_rate
        self.nodes = tuple(nodes)
        self.rng = rng
        self.rate = rate
        self.advances = advances
        self.paused: dict[str, int] = {}  # node -> clock advances left
        self.pauses = 0

    @staticmethod
    def node_of(option: Choice) -> str:
        return option.agent.split(".")[0].split("#")[0] if option.kind == "run" else ""

    def choose(self, options: Sequence[Choice]) -> int:
        runnable = sorted({self.node_of(o) for o in options} & set(self.nodes))
        # A pause strikes anywhere, but hurts most just before a message leaves (the
        # client checked its lease, then stalls before its write goes out), so a
        # node about to send is paused more often.
        sending = sorted({self.node_of(o) for o in options if o.text.endswith("(send)")} & set(self.nodes))
        if sending and self.rng.random() < self.at_send_rate:
            runnable = sending
        elif not (runnable and self.rng.random() < self.rate):
            runnable = []
        if runnable:
            node = self.rng.choice(runnable)
            if node not in self.paused:
                self.paused[node] = self.rng.randint(*self.advances)
                self.pauses += 1
        allowed = [i for i, o in enumerate(options) if self.node_of(o) not in self.paused]
        if not allowed:  # nothing else can happen, not even time: the pause is over
            self.paused.clear()
            allowed = list(range(len(options)))
        index = allowed[self.inner.choose([options[i] for i in allowed])]
        if options[index].kind == "advance":
            self.paused = {n: left - 1 for n, left in self.paused.items() if left > 1}
        return index
