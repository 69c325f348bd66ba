"""impl/clocks.py: the clock library's behaviour, its wire format against hostile
input, its thread safety, and its conformance to spec/clocks.py.

Conformance: a driver runs N processes, each with the library's three clocks and a
fake physical clock that drifts and jumps (backwards too) within the skew of a true
time that advances, through random runs of local events, sends and receipts (the
stamps cross the "network" as JSON, through ``to_json``/``from_json``).  Every step is
recorded as a trace event in the spec's vocabulary (``Tick``, ``Local``, ``Send``,
``Receive``), carrying the spec state that the implementation's stamps make up:
each process's current clocks, the messages in flight with their send stamps, and
each process's events with their stamps.  ``validate_events`` then accepts the
trace only if every recorded state is the one the spec computes, so every stamp
the library produced is compared with the spec's.  The same driver with a
deliberately wrong clock is rejected at exactly the step where its stamps first
differ from the correct library's.

Nothing here measures time: the physical clocks are fakes the tests set.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distcheck.checks.conformance.validate import validate_events, validate_trace
from distcheck.checks.traces import trace
from distcheck.impl.clocks import (
    ClockSkewError,
    HlcTimestamp,
    HybridLogicalClock,
    LamportClock,
    Vector,
    VectorClock,
)
from distcheck.spec.clocks import (
    Clocks,
    ClocksState,
    Config,
    Event,
    Hlc,
    Local,
    Message,
    Receive,
    Send,
    Stamps,
    Tick,
)
from distcheck.spec.codec import to_json
from distcheck.spec.values import FrozenMap
from tests.checks.trace_schema import assert_valid_trace_text

# ------------------------------------------------------------------ Lamport


def test_lamport_ticks_by_one_and_a_receipt_catches_up_with_the_stamp() -> None:
    clock = LamportClock()
    assert (clock.value, clock.tick(), clock.tick(), clock.value) == (0, 1, 2, 2)
    assert clock.receive(10) == 11  # max(2, 10) + 1
    assert clock.receive(3) == 12  # max(11, 3) + 1: an old stamp still advances the clock
    assert LamportClock(5).tick() == 6


@pytest.mark.parametrize("bad", [-1, True, "3", 1.5, None])
def test_lamport_refuses_a_malformed_stamp_and_stays_as_it_was(bad: Any) -> None:
    clock = LamportClock(4)
    with pytest.raises(ValueError, match="Lamport stamp"):
        clock.receive(bad)
    assert clock.value == 4


# ------------------------------------------------------------------- vectors


def test_vector_operations() -> None:
    a = Vector({"a": 2, "b": 1})
    b = Vector({"a": 1, "c": 1})
    assert (a.get("a"), a.get("zzz"), a["b"]) == (2, 0, 1)
    assert a.increment("c") == Vector({"a": 2, "b": 1, "c": 1})
    assert a.merge(b) == Vector({"a": 2, "b": 1, "c": 1}) == b.merge(a)
    assert a.compare(b) == "concurrent" and not a <= b and not b <= a
    assert a.compare(a.merge(b)) == "before" and a < a.merge(b) and a <= a.merge(b)
    assert a.merge(b).compare(a) == "after" and a.merge(b) > a and a.merge(b).descends(a)
    assert a.compare(Vector({"b": 1, "a": 2})) == "equal" and a <= a and not a < a
    # Zero entries are absent entries: equal, same hash, same JSON.
    assert Vector({"a": 0}) == Vector() and hash(Vector({"a": 0, "b": 1})) == hash(Vector({"b": 1}))
    assert Vector({"a": 0, "b": 1}).to_json() == {"b": 1}
    assert Vector().compare(Vector()) == "equal" and Vector() < Vector({"x": 1})
    assert len({Vector({"a": 1}), Vector({"a": 1}), Vector({"a": 2})}) == 2
    with pytest.raises(AttributeError):
        a.__setattr__("_entries", ())


vectors = st.dictionaries(st.sampled_from("abcd"), st.integers(0, 4)).map(Vector)


@given(vectors, vectors, vectors)
def test_merge_is_the_least_upper_bound_and_compare_agrees_with_the_order(a: Vector, b: Vector, c: Vector) -> None:
    m = a.merge(b)
    assert a <= m and b <= m and m == b.merge(a) and a.merge(a) == a
    assert (a <= c and b <= c) == (m <= c)  # least: any upper bound of both is above m
    expected = {(True, True): "equal", (True, False): "before", (False, True): "after", (False, False): "concurrent"}
    assert a.compare(b) == expected[(a <= b, b <= a)]
    assert (a < b) == (a <= b and a != b)
    assert Vector.from_json(json.loads(json.dumps(a.to_json()))) == a


def test_a_vector_clock_ticks_its_own_entry_and_merges_on_receipt() -> None:
    p = VectorClock("p", ["p", "q"])
    q = VectorClock("q", ["p", "q"])
    sent = p.tick()
    assert sent == Vector({"p": 1}) and p.value == sent
    assert q.tick() == Vector({"q": 1})
    assert q.receive(sent) == Vector({"p": 1, "q": 2})
    assert sent < q.value


def test_a_vector_clock_refuses_a_stamp_naming_unknown_nodes_and_stays_as_it_was() -> None:
    clock = VectorClock("p", ["p", "q"])
    clock.tick()
    with pytest.raises(ValueError, match=r"unknown nodes \['mallory'\]"):
        clock.receive(Vector({"q": 1, "mallory": 7}))
    assert clock.value == Vector({"p": 1})
    with pytest.raises(ValueError, match="not among the nodes"):
        VectorClock("r", ["p", "q"])
    # Without a membership any node name is accepted.
    assert VectorClock("p").receive(Vector({"anyone": 3})) == Vector({"anyone": 3, "p": 1})


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ([1, 2], "JSON object"),
        (None, "JSON object"),
        ({"a": -1}, ">= 0"),
        ({"a": True}, "integer"),
        ({"a": 1.0}, "integer"),
        ({"a": "1"}, "integer"),
        ({"a": None}, "integer"),
        ({1: 1}, "strings"),
    ],
)
def test_vector_from_json_refuses_malformed_input_with_one_line(bad: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        Vector.from_json(bad)
    assert "\n" not in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_from_json_on_arbitrary_json_raises_nothing_but_one_line_value_errors(obj: Any) -> None:
    for decode in (Vector.from_json, HlcTimestamp.from_json):
        try:
            value = decode(obj)
        except ValueError as exc:
            assert "\n" not in str(exc)
        else:
            assert value.to_json() == obj or isinstance(value, Vector)  # zero entries are dropped
            assert type(value).from_json(value.to_json()) == value


# ----------------------------------------------------------------------- HLC


class SetClock:
    """A physical clock the test sets; counts its readings."""

    def __init__(self, reading: int = 0) -> None:
        self.reading = reading
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.reading


def test_hlc_follows_physical_time_and_counts_within_one_wall() -> None:
    pt = SetClock(100)
    clock = HybridLogicalClock(pt)
    assert clock.last == HlcTimestamp(0, 0)
    assert clock.now() == HlcTimestamp(100, 0)
    assert clock.now() == HlcTimestamp(100, 1)  # the physical clock did not move
    pt.reading = 105
    assert clock.now() == HlcTimestamp(105, 0)  # it moved: the counter resets
    assert clock.last == HlcTimestamp(105, 0)


def test_hlc_never_goes_backwards_when_the_physical_clock_jumps_back() -> None:
    pt = SetClock(1_000)
    clock = HybridLogicalClock(pt)
    stamps = [clock.now()]
    pt.reading = 400  # an NTP step back
    stamps += [clock.now(), clock.receive(HlcTimestamp(500, 7)), clock.now()]
    assert stamps == [HlcTimestamp(1_000, 0), HlcTimestamp(1_000, 1), HlcTimestamp(1_000, 2), HlcTimestamp(1_000, 3)]
    assert stamps == sorted(set(stamps))
    pt.reading = 1_001
    assert clock.now() == HlcTimestamp(1_001, 0)


@pytest.mark.parametrize(
    ("own", "received", "pt", "expected"),
    [
        ((10, 3), (10, 5), 8, (10, 6)),  # l' = l = lm: one more than the larger counter
        ((10, 3), (9, 5), 8, (10, 4)),  # l' = l only
        ((10, 3), (12, 5), 8, (12, 6)),  # l' = lm only
        ((10, 3), (9, 5), 20, (20, 0)),  # l' = pt only
        ((10, 3), (10, 5), 10, (10, 6)),  # pt ties too: still the counters' rule
    ],
)
def test_hlc_receipt_follows_the_papers_rule(
    own: tuple[int, int], received: tuple[int, int], pt: int, expected: tuple[int, int]
) -> None:
    physical = SetClock(own[0])
    clock = HybridLogicalClock(physical)
    for _ in range(own[1] + 1):
        clock.now()
    assert clock.last == HlcTimestamp(*own)
    physical.reading = pt
    assert clock.receive(HlcTimestamp(*received)) == HlcTimestamp(*expected)


def test_hlc_refuses_a_stamp_further_ahead_than_max_offset_and_stays_as_it_was() -> None:
    clock = HybridLogicalClock(SetClock(100), max_offset=10)
    before = clock.now()
    with pytest.raises(ClockSkewError, match="11 ahead of the physical clock 100, more than max_offset 10") as caught:
        clock.receive(HlcTimestamp(111, 0))
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)
    assert clock.last == before
    assert clock.receive(HlcTimestamp(110, 4)) == HlcTimestamp(110, 5)  # exactly max_offset ahead is fine
    # Without max_offset anything is taken.
    assert HybridLogicalClock(SetClock(0)).receive(HlcTimestamp(10**12, 0)) == HlcTimestamp(10**12, 1)


def test_hlc_timestamps_order_as_pairs_and_refuse_malformed_json() -> None:
    assert HlcTimestamp(5, 9) < HlcTimestamp(6, 0) < HlcTimestamp(6, 1)
    assert HlcTimestamp.from_json([6, 1]) == HlcTimestamp(6, 1) and HlcTimestamp(6, 1).to_json() == [6, 1]
    assert str(HlcTimestamp(6, 1)) == "6.1"
    for bad in ([1], [1, 2, 3], {"wall": 1, "logical": 2}, [1, -2], [True, 0], [1, "2"], "1.2", None):
        with pytest.raises(ValueError):
            HlcTimestamp.from_json(bad)


def test_the_default_physical_clock_reads_unix_milliseconds() -> None:
    # Not a timing assertion: only that the unit is milliseconds since 1970 (after
    # 2020-01-01 and before 2200-01-01), not seconds or nanoseconds.
    wall = HybridLogicalClock().now().wall
    assert 1_577_836_800_000 < wall < 7_258_118_400_000


# ------------------------------------------------------------- thread safety

THREADS = 8
PER_THREAD = 400


def stamps_from_threads(stamp: Callable[[], Any]) -> list[Any]:
    out: list[list[Any]] = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def work(mine: list[Any]) -> None:
        start.wait()
        for _ in range(PER_THREAD):
            mine.append(stamp())

    threads = [threading.Thread(target=work, args=(mine,)) for mine in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mine in out:
        assert mine == sorted(mine)  # each thread sees its own stamps increase
    return [s for mine in out for s in mine]


def test_many_threads_on_one_clock_never_get_the_same_stamp() -> None:
    total = THREADS * PER_THREAD
    lamport = LamportClock()
    assert len(set(stamps_from_threads(lamport.tick))) == total and lamport.value == total
    # Receipts of an old stamp: each adds exactly one, as a tick does.
    assert len(set(stamps_from_threads(lambda: lamport.receive(1)))) == total and lamport.value == 2 * total
    vector = VectorClock("p")
    assert len({v.get("p") for v in stamps_from_threads(vector.tick)}) == total and vector.value.get("p") == total
    # A physical clock that stands still: the counter alone separates the stamps.
    hlc = HybridLogicalClock(lambda: 7)
    got = stamps_from_threads(hlc.now)
    assert len(set(got)) == total and hlc.last == HlcTimestamp(7, total - 1)


# --------------------------------------------------------------- conformance

PROCESSES = 3
EVENTS = 6  # per process
MAX_TIME = 8
SKEW = 3


@dataclass
class Process:
    name: str
    physical: SetClock
    lamport: LamportClock
    vector: VectorClock
    hlc: HybridLogicalClock
    log: list[Event] = field(default_factory=list)
    offset: int = 0  # where its physical clock reads in [now, now + SKEW]

    def stamps(self, order: tuple[str, ...]) -> Stamps:
        """The process's current clocks, as the spec writes them."""
        hlc = self.hlc.last
        return Stamps(self.lamport.value, tuple(self.vector.value.get(p) for p in order), Hlc(hlc.wall, hlc.logical))


@dataclass
class InFlight:
    message: Message  # the spec's view: the send event's stamps
    wire: str  # what crossed the network: the stamps as JSON text


def run(
    seed: int,
    lamport: type[LamportClock] = LamportClock,
    vector: type[VectorClock] = VectorClock,
    hlc: type[HybridLogicalClock] = HybridLogicalClock,
) -> tuple[list[dict[str, Any]], ClocksState]:
    """One random run of the library's clocks: its trace events (each with the spec
    state the stamps make up) and the last of those states.  The random choices do
    not depend on the stamps, so two runs of one seed take the same steps whatever
    clock classes they use."""
    rng = random.Random(seed)
    order = tuple(f"p{i}" for i in range(1, PROCESSES + 1))
    procs: dict[str, Process] = {}
    for name in order:
        physical = SetClock()
        # max_offset = SKEW: stamps from clocks within the skew are never refused.
        procs[name] = Process(name, physical, lamport(), vector(name, order), hlc(physical, max_offset=SKEW))
    now = 1
    in_flight: list[InFlight] = []
    events: list[dict[str, Any]] = []

    def read_physical(proc: Process) -> int:
        """The next reading: a drift by one or a jump anywhere (backwards too), always
        within [now, now + SKEW]."""
        if rng.random() < 0.3:
            proc.offset = rng.randint(0, SKEW)
        else:
            proc.offset = min(SKEW, max(0, proc.offset + rng.choice((-1, 0, 1))))
        proc.physical.reading, proc.physical.reads = now + proc.offset, 0
        return proc.physical.reading

    def stamped(proc: Process, kind: str, pt: int, origin: Message | None = None) -> Stamps:
        assert proc.physical.reads == 1, "the HLC reads the physical clock once per event"
        stamps = proc.stamps(order)
        received = None if origin is None else (origin.sender, origin.index)
        proc.log.append(Event(proc.name, len(proc.log) + 1, kind, stamps, pt, received))
        return stamps

    while True:
        options: list[tuple[str, str, Any]] = [("tick", "env", None)] if now < MAX_TIME else []
        for name, proc in procs.items():
            if len(proc.log) < EVENTS:
                options.append(("local", name, None))
                options += [("send", name, to) for to in order if to != name]
                options += [("receive", name, m) for m in in_flight if m.message.to == name]
        if not options:
            break
        kind, name, arg = rng.choice(options)
        action: Any
        if kind == "tick":
            now += 1
            action = Tick()
        elif kind == "local":
            proc = procs[name]
            pt = read_physical(proc)
            proc.lamport.tick()
            proc.vector.tick()
            proc.hlc.now()
            stamped(proc, "local", pt)
            action = Local(name, pt)
        elif kind == "send":
            proc = procs[name]
            pt = read_physical(proc)
            wire = {
                "lamport": proc.lamport.tick(),
                "vector": proc.vector.tick().to_json(),
                "hlc": proc.hlc.now().to_json(),
            }
            stamps = stamped(proc, "send", pt)
            in_flight.append(InFlight(Message(name, len(proc.log), arg, stamps), json.dumps(wire)))
            action = Send(name, arg, pt)
        else:
            proc, msg = procs[name], arg
            in_flight.remove(msg)
            pt = read_physical(proc)
            payload = json.loads(msg.wire)
            proc.lamport.receive(payload["lamport"])
            proc.vector.receive(Vector.from_json(payload["vector"]))
            proc.hlc.receive(HlcTimestamp.from_json(payload["hlc"]))
            stamped(proc, "receive", pt, msg.message)
            action = Receive(name, msg.message, pt)
        state = ClocksState(
            now=now,
            clocks=FrozenMap({p: procs[p].stamps(order) for p in order}),
            msgs=frozenset(m.message for m in in_flight),
            log=FrozenMap({p: tuple(procs[p].log) for p in order}),
        )
        events.append({"step": len(events) + 1, "actor": name, "action": to_json(action), "state": to_json(state)})
    return events, state


SPEC = Clocks(Config(processes=PROCESSES, events=EVENTS, max_time=MAX_TIME, skew=SKEW))


@settings(max_examples=40)
@given(st.integers(0, 2**32))
def test_the_librarys_stamps_are_the_specs_on_random_runs(seed: int) -> None:
    events, final = run(seed)
    assert len(events) == MAX_TIME - 1 + PROCESSES * EVENTS  # every tick, every event: no step was skipped
    result = validate_events(SPEC, events)
    assert result.ok, result.message
    # And the stamps keep the spec's promises (clock condition, vectors are causality,
    # HLC within the skew of physical time, HLC's counter bounded) on this longer run.
    for invariant in SPEC.invariants():
        assert invariant.holds(final), invariant.name


def test_a_run_written_as_a_trace_file_is_valid_and_replays_with_every_invariant_holding() -> None:
    events, _ = run(seed=7)
    params = {"processes": PROCESSES, "events": EVENTS, "max_time": MAX_TIME, "skew": SKEW}
    initial = trace.TraceStep(0, None, None, to_json(next(iter(SPEC.init_states()))))
    steps = [initial, *(trace.TraceStep(e["step"], e["actor"], e["action"], e["state"]) for e in events)]
    text = trace.dumps(trace.Trace(trace.TraceHeader("clocks", params, source="impl"), tuple(steps)))
    written = assert_valid_trace_text(text)  # the documented format, line by line
    validated = validate_trace(SPEC, written)  # what `distcheck validate clocks` does
    assert validated.ok, validated.message
    replayed = trace.replay(written, SPEC)  # re-executes it, checking every invariant at every step
    assert replayed.verdict == "ok", replayed.reason


# Deliberately wrong clocks, each a classic mistake that a spec variant names.


class LamportIgnoresStamp(LamportClock):
    """spec variant lamport_skips_max: a receipt adds one to its own value only."""

    def receive(self, stamp: int) -> int:
        return self.tick()


class VectorIgnoresStamp(VectorClock):
    """spec variant vector_skips_merge: a receipt increments without merging."""

    def receive(self, stamp: Vector) -> Vector:
        return self.tick()


class HlcIgnoresStamp(HybridLogicalClock):
    """A receipt treated as a local event: the message's l and c are never heard of."""

    def receive(self, stamp: HlcTimestamp) -> HlcTimestamp:
        return self.now()


WRONG: dict[str, dict[str, Any]] = {
    "lamport": {"lamport": LamportIgnoresStamp},
    "vector": {"vector": VectorIgnoresStamp},
    "hlc": {"hlc": HlcIgnoresStamp},
}


@pytest.mark.parametrize("wrong", sorted(WRONG))
def test_a_wrong_clock_is_rejected_at_the_first_step_its_stamps_differ(wrong: str) -> None:
    rejected = 0
    for seed in range(12):
        right, _ = run(seed)
        broken, _ = run(seed, **WRONG[wrong])
        assert [(e["actor"], e["action"]["type"]) for e in right] == [(e["actor"], e["action"]["type"]) for e in broken]
        differs = next((i for i, (a, b) in enumerate(zip(right, broken, strict=True)) if a != b), None)
        result = validate_events(SPEC, broken)
        if differs is None:
            assert result.ok, result.message  # the mistake never showed: nothing to reject
            continue
        rejected += 1
        assert not result.ok and result.mismatch is not None
        assert result.mismatch.step == broken[differs]["step"]
        assert broken[differs]["action"]["type"] == "Receive"  # only receipts differ
        assert result.mismatch.kind == "state"
        assert any(wrong in str(change) for change in result.mismatch.diff), result.mismatch.diff
    assert rejected >= 6, f"only {rejected} of 12 runs exercised the {wrong} mistake"
