"""A nemesis for the free runtime: a seeded schedule of faults (crashes, partitions,
slow nodes, clock jumps) injected into running nodes for a bounded time, every one
healed by the end.

Where it sits: beside ``impl.runtime.faults``, between a ``FreeRuntime`` (or several
connected ones) and its nodes, without the nodes knowing.  The controlled scheduler
injects its faults itself, step by step; in free mode time is real, so the faults
come from this schedule instead, on a thread of the nemesis's own.  Everything stays
on this machine: the nemesis acts on the nodes' contexts and on their runtime, never
on the network.

How each fault is made:

- **crash** (a node, for a while): the runtime's own crash (``FreeRuntime.crash``:
  its threads unwind, mailbox and timers are lost) and the runtime's own restart;
  the restarted node then waits, before its ``main`` runs, until the fault heals, so
  the node is down as long as the schedule says.  Each crash is one of the runtime's
  ``max_restarts``, which ``attach`` checks, and is listed in its ``crashes`` with a
  reason starting ``nemesis:``.
- **partition** (a side, for a while): a message sent across the cut, either way
  between the side and any node outside it, is dropped by the sender's context, as a
  network that loses it would (``dropped`` counts them); the side's members still
  reach each other.  Only wrapped nodes' sends are cut: a client that is not a node
  (a client port's) still reaches the side.
- **slow** (a node, for a while): each message or timer the node takes is held
  ``amount`` seconds before its handler sees it, so the node answers late and its
  own timers (heartbeats) go out late: a node starved of CPU, or swapping.
- **clock** (a node, for a while): the node's ``ctx.now()`` jumps by ``amount``
  seconds (forward or back) and jumps back when the fault heals: an NTP step on the
  wall clock a node uses.  Delays (timers, timeouts, sleeps) are spans and do not
  move.

A schedule is a tuple of ``Fault`` records; ``plan(seed, duration, targets)`` draws
one, the same for the same arguments.  Every fault injected is counted in
``distcheck.faults.injected`` (by ``kind``), noted in the runtime's diagnostics
(``nemesis: ...``, which also go to the telemetry's log) and kept in ``events``
with its time since the nemesis started; so is every heal.  ``stop()``, or the end
of the schedule, heals what is still in force.

Using it::

    nemesis = Nemesis(plan(seed=1, duration=20.0, targets={"slow": ["s1", "s2"], "crash": ["s3"]}))
    runtime = FreeRuntime(nemesis.wrap(nodes), directory, max_restarts=10)
    nemesis.attach(runtime)
    with runtime, nemesis:  # starts the runtime, then the schedule
        nemesis.wait()
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.runtime.api import Context, ContextWrapper, Message, NodeMain, Received
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.telemetry import count

#: the faults a nemesis knows, in the order ``plan`` first tries them
KINDS = ("crash", "partition", "slow", "clock")

#: seconds a fault of each kind lasts, drawn uniformly in (low, high)
DEFAULT_LENGTHS: Mapping[str, tuple[float, float]] = {
    "crash": (0.5, 1.5),
    "partition": (1.0, 3.0),
    "slow": (2.0, 5.0),
    "clock": (1.0, 3.0),
}
#: the fault's size: slow, seconds each message or timer is held; clock, the size of
#: the jump in seconds (its direction drawn apart).  Crashes and partitions have none.
DEFAULT_AMOUNTS: Mapping[str, tuple[float, float]] = {"slow": (0.5, 1.5), "clock": (0.5, 3.0)}

#: how often a restarted node looks whether its crash has healed (seconds)
_DOWN_POLL = 0.02
#: the slice a slow node's hold is cut into, so that a heal ends it promptly (seconds)
_HOLD_SLICE = 0.05


@attrs.frozen
class Fault:
    """One fault of a schedule: ``kind`` (one of ``KINDS``) hits ``nodes`` from
    ``start`` for ``length`` seconds (times since the nemesis starts).  ``nodes``: the
    node crashed, slowed or whose clock moves (each, when several), or the side a
    partition cuts off from every other node.  ``amount``: seconds each item is held
    (slow), the jump (clock, signed)."""

    kind: str
    nodes: tuple[str, ...]
    start: float
    length: float
    amount: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(KINDS)}")
        if not self.nodes or not all(isinstance(n, str) and n for n in self.nodes):
            raise ValueError(f"a fault needs at least one node name, got {self.nodes!r}")
        for name in ("start", "length", "amount"):
            value = getattr(self, name)
            if not math.isfinite(value) or (value < 0 and name != "amount"):
                raise ValueError(f"a fault's {name} must be a finite number (>= 0 but for amount), got {value}")
        if self.kind == "slow" and self.amount <= 0:
            raise ValueError(f"a slow fault holds each item some time: amount must be > 0, got {self.amount}")

    @property
    def end(self) -> float:
        return self.start + self.length

    def describe(self) -> str:
        who = ",".join(self.nodes)
        if self.kind == "crash":
            return f"crash {who}, down {self.length:.1f} s"
        if self.kind == "partition":
            return f"partition {who} | the rest, {self.length:.1f} s"
        if self.kind == "slow":
            return f"slow {who}: each message and timer held {self.amount:.2f} s, for {self.length:.1f} s"
        return f"clock {who} jumps {self.amount:+.2f} s, for {self.length:.1f} s"


@attrs.frozen
class Event:
    """A fault injected (``what`` "inject") or healed ("heal"), ``at`` seconds after
    the nemesis started."""

    at: float
    what: str
    fault: Fault


def _range(kind: str, what: str, bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise ValueError(f"{what} of {kind} faults must be 0 <= low <= high, finite; got {bounds!r}")
    return float(low), float(high)


def plan(
    seed: int,
    duration: float,
    targets: Mapping[str, Sequence[str]],
    *,
    faults: int | None = None,
    lengths: Mapping[str, tuple[float, float]] | None = None,
    amounts: Mapping[str, tuple[float, float]] | None = None,
    gap: float = 0.5,
    concurrent: int = 2,
    settle: float = 1.0,
) -> tuple[Fault, ...]:
    """A schedule of faults over ``duration`` seconds, the same for the same arguments.

    ``targets``: for each kind to inject, the nodes it may hit (a partition cuts one of
    them off).  ``faults``: how many to try to place (default: each kind once per ten
    seconds, at least once).  Each kind is placed once first, in the order of
    ``targets``, then kinds are drawn at random; a fault is placed at a random start
    where none of its nodes is in another fault (nor within ``gap`` seconds of one),
    no other partition is in force, and fewer than ``concurrent`` faults are; one that
    finds no such place after a hundred draws is left out.  Every fault ends at least
    ``settle`` seconds before ``duration``, so the run ends healed and recovered."""
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    if not (math.isfinite(gap) and gap >= 0 and math.isfinite(settle) and 0 <= settle < duration):
        raise ValueError(f"gap must be >= 0 and settle in [0, duration); got gap={gap}, settle={settle}")
    if concurrent < 1:
        raise ValueError(f"concurrent must be at least 1, got {concurrent}")
    unknown = sorted(set(targets) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {', '.join(unknown)}; known: {', '.join(KINDS)}")
    kinds = [k for k in targets if targets[k]]
    if not kinds:
        raise ValueError("no targets: name the nodes at least one kind of fault may hit")
    spans = {k: _range(k, "lengths", (lengths or {}).get(k, DEFAULT_LENGTHS[k])) for k in kinds}
    sizes = {k: _range(k, "amounts", (amounts or {}).get(k, DEFAULT_AMOUNTS.get(k, (0.0, 0.0)))) for k in kinds}
    if "slow" in sizes and sizes["slow"][0] <= 0:
        raise ValueError(f"a slow fault holds each item some time: amounts of slow must be > 0, got {sizes['slow']}")
    window = duration - settle
    wanted = faults if faults is not None else len(kinds) * max(1, round(duration / 10))
    rng = random.Random(seed)
    order = kinds[:wanted] + [rng.choice(kinds) for _ in range(wanted - len(kinds))]
    placed: list[Fault] = []
    for kind in order:
        low, high = spans[kind]
        length = min(rng.uniform(low, high), window)
        nodes = (rng.choice(list(targets[kind])),)
        amount = rng.uniform(*sizes[kind])
        if kind == "clock" and rng.random() < 0.5:
            amount = -amount
        for _ in range(100):
            start = rng.uniform(0.0, window - length)
            candidate = Fault(kind, nodes, round(start, 3), round(length, 3), round(amount, 3))
            if _fits(candidate, placed, gap, concurrent):
                placed.append(candidate)
                break
    return tuple(sorted(placed, key=lambda f: (f.start, f.kind, f.nodes)))


def _fits(candidate: Fault, placed: Sequence[Fault], gap: float, concurrent: int) -> bool:
    overlapping = [f for f in placed if f.start < candidate.end and candidate.start < f.end]
    if len(overlapping) >= concurrent:
        return False
    for f in placed:
        near = f.start - gap < candidate.end and candidate.start < f.end + gap
        if near and set(f.nodes) & set(candidate.nodes):
            return False
        if f in overlapping and f.kind == candidate.kind == "partition":
            return False
    return True


class _NodeState:
    """What the nemesis does to one node now (changed under the nemesis's lock, read
    without it: each field is one reference, replaced whole)."""

    def __init__(self) -> None:
        self.down = False
        self.hold = 0.0  # seconds each received item is held (slow)
        self.offset = 0.0  # seconds added to the node's clock (clock jump)


class Nemesis:
    """Runs a schedule of faults against wrapped nodes (module docstring)."""

    def __init__(self, schedule: Iterable[Fault]) -> None:
        self.schedule = tuple(sorted(schedule, key=lambda f: (f.start, f.kind, f.nodes)))
        self.events: list[Event] = []
        #: messages dropped by a partition, by (sender, receiver)
        self.dropped: Counter[tuple[str, str]] = Counter()
        self._states: dict[str, _NodeState] = {}
        self._runtimes: dict[str, FreeRuntime] = {}
        self._sides: tuple[frozenset[str], ...] = ()
        self._active: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: ``time.monotonic()`` when the schedule started (None before)
        self.origin: float | None = None

    @classmethod
    def seeded(cls, seed: int, duration: float, targets: Mapping[str, Sequence[str]], **options: Any) -> Nemesis:
        """A nemesis running ``plan(seed, duration, targets, **options)``."""
        return cls(plan(seed, duration, targets, **options))

    @property
    def duration(self) -> float:
        """When the schedule's last fault heals (seconds after the start)."""
        return max((f.end for f in self.schedule), default=0.0)

    # ----------------------------------------------------------- wiring

    def wrap(self, nodes: Mapping[str, NodeMain]) -> dict[str, NodeMain]:
        """The nodes, each with a context the nemesis can slow, cut off, move the clock
        of and keep down: hand these to the runtime instead."""
        out: dict[str, NodeMain] = {}
        for name, main in nodes.items():
            self._states.setdefault(name, _NodeState())
            out[name] = functools.partial(self._run_node, name, main)
        return out

    def attach(self, *runtimes: FreeRuntime) -> None:
        """The runtimes hosting the wrapped nodes: crashes go through them, and notes
        to them.  Each must restart a node as often as the schedule crashes it."""
        for runtime in runtimes:
            for name in runtime.nodes:
                self._runtimes[name] = runtime
        crashes = Counter(n for f in self.schedule if f.kind == "crash" for n in f.nodes)
        for name, times in sorted(crashes.items()):
            host = self._runtimes.get(name)
            if host is None:
                continue  # start() says so, once every runtime may have been attached
            left = host.max_restarts - host.nodes[name].restarts
            if times > left:
                raise ValueError(
                    f"the schedule crashes {name} {times} times, and its runtime restarts it at most {left} "
                    f"more times: build the runtime with max_restarts >= {times}"
                )

    def _run_node(self, name: str, main: NodeMain, ctx: Context) -> None:
        state = self._states[name]
        # Restarted by the runtime during an injected crash: stay down until it heals
        # (ctx.sleep raises NodeCrashed if the runtime stops meanwhile).
        while state.down:
            ctx.sleep(_DOWN_POLL)
        main(_FaultyContext(ctx, self, state))

    def cut(self, src: str, dst: str) -> bool:
        """Whether a partition in force separates ``src`` from ``dst``."""
        return any((src in side) != (dst in side) for side in self._sides)

    # ----------------------------------------------------------- running

    def start(self) -> None:
        """Start the schedule (its times count from now) on a thread of its own."""
        if self._thread is not None:
            raise RuntimeError("this nemesis has started already")
        for fault in self.schedule:
            unwrapped = [n for n in fault.nodes if n not in self._states and fault.kind != "partition"]
            if unwrapped:
                raise ValueError(f"{fault.describe()}: {', '.join(unwrapped)} not wrapped by this nemesis")
            if fault.kind == "crash":
                hostless = [n for n in fault.nodes if n not in self._runtimes]
                if hostless:
                    raise ValueError(f"{fault.describe()}: no runtime attached hosts {', '.join(hostless)}")
        self.origin = time.monotonic()
        self._thread = threading.Thread(target=self._play, name="nemesis", daemon=True)
        self._thread.start()

    def elapsed(self) -> float:
        """Seconds since the nemesis started (0 before)."""
        return 0.0 if self.origin is None else time.monotonic() - self.origin

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the schedule to end (every fault healed); whether it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """End the schedule now: heal every fault in force, and return once healed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Nemesis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def active(self) -> tuple[Fault, ...]:
        """The faults in force now."""
        with self._lock:
            return tuple(self._active)

    def _play(self) -> None:
        steps: list[tuple[float, int, Fault]] = []
        for fault in self.schedule:
            steps.append((fault.start, 1, fault))
            steps.append((fault.end, 0, fault))  # at one instant, heals come first
        steps.sort(key=lambda s: (s[0], s[1]))
        assert self.origin is not None
        try:
            for at, inject, fault in steps:
                if self._stop.wait(max(0.0, self.origin + at - time.monotonic())):
                    break
                if inject:
                    self._inject(fault)
                elif fault in self._active:
                    self._heal(fault)
        finally:
            for fault in reversed(self.active):
                self._heal(fault)

    def _inject(self, fault: Fault) -> None:
        with self._lock:
            at = self.elapsed()  # before the change: whatever the change causes comes after it
            self._active.append(fault)
            if fault.kind == "partition":
                self._sides = (*self._sides, frozenset(fault.nodes))
            for name in fault.nodes:
                state = self._states.get(name)
                if state is None:
                    continue
                if fault.kind == "slow":
                    state.hold = fault.amount
                elif fault.kind == "clock":
                    state.offset += fault.amount
                elif fault.kind == "crash":
                    state.down = True
            self.events.append(Event(at, "inject", fault))
        count("distcheck.faults.injected", kind=fault.kind)
        self._note(fault, f"nemesis: {fault.describe()}")
        if fault.kind == "crash":
            for name in fault.nodes:
                runtime = self._runtimes[name]
                node = runtime.nodes[name]
                if node.stopped:
                    self._note(fault, f"nemesis: {name} is down already (its own crash): not crashed again")
                    continue
                runtime.crash(node, f"nemesis: {fault.describe()}")

    def _heal(self, fault: Fault) -> None:
        with self._lock:
            if fault not in self._active:
                return
            at = self.elapsed()
            self._active.remove(fault)
            if fault.kind == "partition":
                sides = list(self._sides)
                sides.remove(frozenset(fault.nodes))
                self._sides = tuple(sides)
            for name in fault.nodes:
                state = self._states.get(name)
                if state is None:
                    continue
                if fault.kind == "slow":
                    state.hold = 0.0
                elif fault.kind == "clock":
                    state.offset -= fault.amount
                elif fault.kind == "crash":
                    state.down = False
            self.events.append(Event(at, "heal", fault))
        self._note(fault, f"nemesis: healed: {fault.describe()}")

    def _note(self, fault: Fault, text: str) -> None:
        hosting = [self._runtimes[n] for n in fault.nodes if n in self._runtimes]
        if fault.kind == "partition" or not hosting:
            hosting = list(self._runtimes.values())  # a partition concerns every runtime
        for runtime in {id(rt): rt for rt in hosting}.values():
            runtime.note(text)

    def _drop(self, src: str, dst: str) -> None:
        with self._lock:
            self.dropped[(src, dst)] += 1


class _FaultyContext(ContextWrapper):
    """A node's context as the nemesis makes it: sends across a partition dropped,
    received items held while the node is slow, the clock moved by the offset."""

    def __init__(self, inner: Context, nemesis: Nemesis, state: _NodeState) -> None:
        super().__init__(inner)
        self.nemesis = nemesis
        self.state = state

    def send(self, dst: str, msg: Message) -> None:
        if self.nemesis.cut(self.name, dst):
            # Lost as on a cut network; a crashed node still stops here as on a send.
            self.inner.yield_now()
            self.nemesis._drop(self.name, dst)
            return
        self.inner.send(dst, msg)

    def receive(self, timeout: float | None = None) -> Received | None:
        item = self.inner.receive(timeout)
        if item is not None and self.state.hold > 0:
            self._hold(self.state.hold)
        return item

    def receive_ready(self) -> Received | None:
        if self.state.hold > 0:
            return None  # a slow node takes its items one at a time, each held
        return self.inner.receive_ready()

    def _hold(self, seconds: float) -> None:
        # In slices, so that the item is let go as soon as the fault heals.
        deadline = self.inner.now() + seconds
        while self.state.hold > 0:
            left = deadline - self.inner.now()
            if left <= 0:
                return
            self.inner.sleep(min(left, _HOLD_SLICE))

    def now(self) -> float:
        return self.inner.now() + self.state.offset
