"""Logical clocks: Lamport clocks, vector clocks and hybrid logical clocks (HLC),
side by side on one run of message-passing processes whose physical clocks drift
and jump.

Processes ``p1..pN`` take events: a local event, a send to another process, or the
receipt of a message sent to it.  Every event is stamped by three clocks at once:

- **Lamport** (1978): an integer; every event adds 1, and a receipt first takes the
  maximum of its own and the message's.  The *clock condition*: if e happened
  before f (e → f: e precedes f at one process, or e sends what f receives, or a
  chain of these), then L(e) < L(f).  The converse does not hold.
- **Vector** (Fidge, Mattern 1988): one counter per process; an event increments
  its process's entry, a receipt first takes the entrywise maximum.  It
  characterises causality exactly: e → f iff V(e) < V(f) (every entry ≤, one <).
- **Hybrid logical clock** (Kulkarni, Demirbas, Madappa, Avva, Leone 2014): a pair
  (l, c) where l follows the largest physical time heard of and c counts events
  that share an l.  On a local event or a send: l' = max(l, pt); c' = c + 1 if l'
  = l else 0.  On a receipt of (lm, cm): l' = max(l, lm, pt); c' is one more than
  the largest c among those l's that equal l' (or 0 if only pt does).  HLC keeps
  the clock condition, never goes backwards, and stays within ε of physical time.

Physical time: a true time ``now`` (1..``max_time``; the clocks start at 0, before
any reading), and each event reads its process's physical clock ``pt`` anywhere in
[now, now + ``skew``]: between two readings a clock drifts, and it jumps, backwards
too (an NTP step), but any two processes' clocks differ by at most ``skew`` (ε).
What a clock does between readings is no one's business, so the reading is a
parameter of the event rather than a variable of the state.

Sources: L. Lamport, "Time, clocks, and the ordering of events in a distributed
system" (CACM 1978); C. Fidge, "Timestamps in message-passing systems that preserve
the partial ordering" (1988); F. Mattern, "Virtual time and global states of
distributed systems" (1988); S. Kulkarni et al., "Logical physical clocks"
(OPODIS 2014).

State: ``now``; each process's three clocks;
``msgs``, the messages in flight (each carries its send event's stamps); and
``log``, each process's events with their stamps and, for a receipt, the send it
received (a history variable: happened-before is computed from it; kept per
process, so that independent events taken in either order lead to one state).

Actions
    Tick                            True time advances by one (up to ``max_time``).
    Local(process, pt)              A local event, the physical clock reading ``pt``.
    Send(process, to, pt)           The process sends a message to ``to``.
    Receive(process, message, pt)   The process receives a message in flight to it.

Invariants
    ClockCondition          e → f implies L(e) < L(f), and H(e) < H(f) (HLC, ordered as
                            pairs): so neither clock goes backwards at a process, whatever
                            its physical clock does (program order is part of →).
    VectorsAreCausality     e → f iff V(e) < V(f).
    HlcNearPhysical         every HLC stamp's l is at least the event's physical time and
                            at most ``skew`` ahead of it.
    HlcCounterBounded       an event's c is at most the number of events before it in
                            causality with the same l.

Reachable
    ConcurrentEvents        two events neither of which happened before the other.
    LamportOrdersConcurrent two concurrent events with different Lamport clocks (the
                            converse of the clock condition fails).
    HlcAheadOfPhysical      an event's HLC l is ahead of its own physical time.

Variants, each caught
    lamport_skips_max         a receipt adds 1 to its own clock, ignoring the message's   ClockCondition
    vector_skips_merge        a receipt does not merge the message's vector               VectorsAreCausality
    hlc_physical_only         HLC's l is the physical clock alone (a wall-clock stamp)   ClockCondition
    hlc_no_counter            HLC keeps c at 0 (l alone)                                  ClockCondition
    hlc_without_physical      HLC never reads the physical clock (a Lamport pair)         HlcNearPhysical
    hlc_counter_never_resets  c counts every event, not only those sharing an l          HlcCounterBounded
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.values import FrozenMap

# ----------------------------------------------------------------------- values


@attrs.frozen(order=True)
class Hlc:
    """A hybrid logical clock: ``l`` (physical time heard of), ``c`` (a counter)."""

    l: int  # noqa: E741 - the paper's name
    c: int

    def __str__(self) -> str:
        return f"{self.l}.{self.c}"


@attrs.frozen
class Stamps:
    """The three clocks' values at an event."""

    lamport: int
    vector: tuple[int, ...]
    hlc: Hlc


@attrs.frozen
class Event:
    """One event of the log: its process, its index there (1, 2, ...), its kind,
    its stamps and the physical time it read; a receipt names the send it received."""

    process: str
    index: int
    kind: str  # "local", "send" or "receive"
    stamps: Stamps
    pt: int
    received: tuple[str, int] | None = None  # (process, index) of the send

    def __str__(self) -> str:
        stamps = self.stamps
        return f"{self.process}#{self.index} {self.kind} L={stamps.lamport} V={list(stamps.vector)} H={stamps.hlc}"


@attrs.frozen
class Message:
    """A message in flight: who sent it (the send event) and its stamps."""

    sender: str
    index: int
    to: str
    stamps: Stamps

    def __str__(self) -> str:
        return f"msg({self.sender}#{self.index}→{self.to})"


@attrs.frozen
class ClocksState:
    now: int
    clocks: FrozenMap[str, Stamps]  # each process's current clocks
    msgs: frozenset[Message]
    log: FrozenMap[str, tuple[Event, ...]]  # each process's events, in its order


# ---------------------------------------------------------------------- actions


class ProcessAction(Action):
    __slots__ = ()
    ACTOR = "process"


@attrs.frozen
class Tick(Action):
    ACTOR = "env"


@attrs.frozen
class Local(ProcessAction):
    process: str
    pt: int


@attrs.frozen
class Send(ProcessAction):
    process: str
    to: str
    pt: int


@attrs.frozen
class Receive(ProcessAction):
    process: str
    message: Message
    pt: int


ClocksAction = Tick | Local | Send | Receive


@attrs.frozen
class Config:
    processes: int = param(2, help="processes p1, p2, ...", minimum=1, maximum=4)
    events: int = param(2, help="bound: events each process takes", minimum=1, maximum=6)
    max_time: int = param(2, help="bound: true time runs 1..max_time", minimum=1, maximum=10)
    skew: int = param(1, help="ε: a physical clock reads [now, now + skew]", minimum=0, maximum=5)
    variant: str | None = None


# ------------------------------------------------------------------------- spec


class Clocks(Spec[ClocksState, ClocksAction]):
    name = "clocks"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.processes = tuple(f"p{i}" for i in range(1, config.processes + 1))
        self.position = {p: i for i, p in enumerate(self.processes)}

    def init_states(self) -> Iterable[ClocksState]:
        zero = Stamps(0, (0,) * len(self.processes), Hlc(0, 0))
        yield ClocksState(
            now=1,
            clocks=FrozenMap({p: zero for p in self.processes}),
            msgs=frozenset(),
            log=FrozenMap({p: () for p in self.processes}),
        )

    def next(self) -> Next:
        return (
            self.tick,
            Exists(
                "process",
                self.processes,
                Exists(
                    "pt",
                    self.readings,
                    self.local,
                    Exists("to", self.processes, self.send),
                    Exists("message", self.in_flight, self.receive),
                ),
            ),
        )

    # ------------------------------------------------------------ helpers

    def readings(self, s: ClocksState, process: str | None = None) -> tuple[int, ...]:
        """What a physical clock may read now: [now, now + skew]."""
        return tuple(range(s.now, s.now + self.config.skew + 1))

    def in_flight(self, s: ClocksState, process: str, pt: int) -> list[Message]:
        return sorted((m for m in s.msgs if m.to == process), key=lambda m: (m.sender, m.index))

    def taken(self, s: ClocksState, process: str) -> int:
        return len(s.log[process])

    def lamport(self, own: int, received: int | None) -> int:
        """A Lamport clock's next value: one more than the larger of its own and
        the message's."""
        return max(own, received if received is not None else own) + 1

    def vector(self, process: str, own: tuple[int, ...], received: tuple[int, ...] | None) -> tuple[int, ...]:
        """A vector clock's next value: the entrywise maximum with the message's,
        then one more in the process's own entry."""
        merged = own if received is None else tuple(max(a, b) for a, b in zip(own, received, strict=True))
        i = self.position[process]
        return (*merged[:i], merged[i] + 1, *merged[i + 1 :])

    def hlc(self, own: Hlc, pt: int, received: Hlc | None) -> Hlc:
        """HLC's next value (Kulkarni et al., Figure 5)."""
        if received is None:
            l = max(own.l, pt)  # noqa: E741
            return Hlc(l, own.c + 1 if l == own.l else 0)
        l = max(own.l, received.l, pt)  # noqa: E741
        if l == own.l and l == received.l:
            c = max(own.c, received.c) + 1
        elif l == own.l:
            c = own.c + 1
        elif l == received.l:
            c = received.c + 1
        else:
            c = 0
        return Hlc(l, c)

    def stamp(self, s: ClocksState, process: str, pt: int, received: Stamps | None) -> Stamps:
        own = s.clocks[process]
        return Stamps(
            self.lamport(own.lamport, None if received is None else received.lamport),
            self.vector(process, own.vector, None if received is None else received.vector),
            self.hlc(own.hlc, pt, None if received is None else received.hlc),
        )

    def event(
        self, s: ClocksState, process: str, kind: str, pt: int, received: Message | None = None
    ) -> tuple[ClocksState, Event] | None:
        if self.taken(s, process) >= self.config.events or pt not in self.readings(s):
            return None
        stamps = self.stamp(s, process, pt, None if received is None else received.stamps)
        origin = None if received is None else (received.sender, received.index)
        e = Event(process, self.taken(s, process) + 1, kind, stamps, pt, origin)
        return attrs.evolve(s, clocks=s.clocks.set(process, stamps), log=s.log.set(process, (*s.log[process], e))), e

    # -------------------------------------------------------------- rules

    @rule(Tick)
    def tick(self, s: ClocksState) -> ClocksState | None:
        """True time advances."""
        if s.now >= self.config.max_time:
            return None
        return attrs.evolve(s, now=s.now + 1)

    @rule(Local)
    def local(self, s: ClocksState, process: str, pt: int) -> ClocksState | None:
        """A local event."""
        done = self.event(s, process, "local", pt)
        return None if done is None else done[0]

    @rule(Send)
    def send(self, s: ClocksState, process: str, to: str, pt: int) -> ClocksState | None:
        """The process sends a message to another, stamped with the send event's clocks."""
        if to == process:
            return None
        done = self.event(s, process, "send", pt)
        if done is None:
            return None
        after, e = done
        return attrs.evolve(after, msgs=after.msgs | {Message(process, e.index, to, e.stamps)})

    @rule(Receive)
    def receive(self, s: ClocksState, process: str, message: Message, pt: int) -> ClocksState | None:
        """The process receives a message in flight to it, merging its stamps."""
        if message not in s.msgs or message.to != process:
            return None
        done = self.event(s, process, "receive", pt, message)
        if done is None:
            return None
        return attrs.evolve(done[0], msgs=done[0].msgs - {message})

    # ========================================================== properties

    def events(self, s: ClocksState) -> list[Event]:
        """Every event, process by process (positions in this list name them below)."""
        return [e for p in self.processes for e in s.log[p]]

    def happened_before(self, s: ClocksState) -> set[tuple[int, int]]:
        """e → f over the log's positions: program order and send → receive, closed
        transitively."""
        log = self.events(s)
        where = {(e.process, e.index): i for i, e in enumerate(log)}
        direct: dict[int, set[int]] = {i: set() for i in range(len(log))}
        for i, e in enumerate(log):
            if e.index > 1:
                direct[where[(e.process, e.index - 1)]].add(i)
            if e.received is not None:
                direct[where[e.received]].add(i)
        out: set[tuple[int, int]] = set()
        for i in range(len(log)):
            stack, seen = list(direct[i]), set()
            while stack:
                j = stack.pop()
                if j not in seen:
                    seen.add(j)
                    stack.extend(direct[j])
            out |= {(i, j) for j in seen}
        return out

    def invariants(self) -> Sequence[Invariant[ClocksState]]:
        return (
            Invariant(
                "ClockCondition",
                "if e happened before f, Lamport's and HLC's stamps of e are below f's",
                self._clock_condition,
            ),
            Invariant(
                "VectorsAreCausality",
                "e happened before f exactly when e's vector is below f's",
                self._vectors_are_causality,
            ),
            Invariant(
                "HlcNearPhysical",
                "every HLC stamp's l is at least its event's physical time and at most skew ahead of it",
                lambda s: all(0 <= e.stamps.hlc.l - e.pt <= self.config.skew for e in self.events(s)),
            ),
            Invariant(
                "HlcCounterBounded",
                "an event's c is at most the number of events before it in causality with the same l",
                self._counter_bounded,
            ),
        )

    def _clock_condition(self, s: ClocksState) -> bool:
        log = self.events(s)
        return all(
            log[i].stamps.lamport < log[j].stamps.lamport and log[i].stamps.hlc < log[j].stamps.hlc
            for i, j in self.happened_before(s)
        )

    def _vectors_are_causality(self, s: ClocksState) -> bool:
        before = self.happened_before(s)
        log = self.events(s)
        for i, e in enumerate(log):
            for j, f in enumerate(log):
                if i != j and ((i, j) in before) != _vector_below(e.stamps.vector, f.stamps.vector):
                    return False
        return True

    def _counter_bounded(self, s: ClocksState) -> bool:
        before = self.happened_before(s)
        log = self.events(s)
        for j, f in enumerate(log):
            same = sum(1 for i, e in enumerate(log) if (i, j) in before and e.stamps.hlc.l == f.stamps.hlc.l)
            if f.stamps.hlc.c > same:
                return False
        return True

    def reachable(self) -> Sequence[Reachable[ClocksState]]:
        out: list[Reachable[ClocksState]] = [
            Reachable("ConcurrentEvents", "two events neither of which happened before the other", self._concurrent),
            Reachable(
                "LamportOrdersConcurrent",
                "two concurrent events with different Lamport clocks",
                lambda s: self._concurrent(s, lamport_differs=True),
            ),
        ]
        if self.config.skew:
            out.append(
                Reachable(
                    "HlcAheadOfPhysical",
                    "an event's HLC l is ahead of its own physical time",
                    lambda s: any(e.stamps.hlc.l > e.pt for e in self.events(s)),
                )
            )
        return out

    def _concurrent(self, s: ClocksState, lamport_differs: bool = False) -> bool:
        before = self.happened_before(s)
        log = self.events(s)
        for i, e in enumerate(log):
            for j in range(i + 1, len(log)):
                if (i, j) not in before and (j, i) not in before:
                    if not lamport_differs or e.stamps.lamport != log[j].stamps.lamport:
                        return True
        return False


def _vector_below(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


# ------------------------------------------------------------------------ variants


@variant("lamport_skips_max", "a receipt adds 1 to the process's own Lamport clock, ignoring the message's")
class LamportSkipsMax(Clocks):
    def lamport(self, own: int, received: int | None) -> int:
        return own + 1


@variant("vector_skips_merge", "a receipt increments the process's own entry without merging the message's vector")
class VectorSkipsMerge(Clocks):
    def vector(self, process: str, own: tuple[int, ...], received: tuple[int, ...] | None) -> tuple[int, ...]:
        return super().vector(process, own, None)


@variant("hlc_physical_only", "HLC's l is the physical clock's reading alone (a timestamp from the wall clock)")
class HlcPhysicalOnly(Clocks):
    def hlc(self, own: Hlc, pt: int, received: Hlc | None) -> Hlc:
        return Hlc(pt, 0)


@variant("hlc_no_counter", "HLC keeps l but no counter: c is always 0")
class HlcNoCounter(Clocks):
    def hlc(self, own: Hlc, pt: int, received: Hlc | None) -> Hlc:
        return Hlc(super().hlc(own, pt, received).l, 0)


@variant("hlc_without_physical", "HLC never reads the physical clock: l moves only with messages (a Lamport pair)")
class HlcWithoutPhysical(Clocks):
    def hlc(self, own: Hlc, pt: int, received: Hlc | None) -> Hlc:
        return super().hlc(own, 0, received)


@variant("hlc_counter_never_resets", "HLC's c counts every event, even when l moves on")
class HlcCounterNeverResets(Clocks):
    def hlc(self, own: Hlc, pt: int, received: Hlc | None) -> Hlc:
        nxt = super().hlc(own, pt, received)
        return Hlc(nxt.l, max(own.c, received.c if received is not None else 0) + 1)
