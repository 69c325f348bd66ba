"""The explorer's fast paths give the numbers and results of the plain definitions.

The explorer and the fingerprints take shortcuts on the hot path (issue #22): an
attrs class's fingerprint is generated straight-line code, ``FrozenMap.set`` and
``remove`` update a fingerprint by one entry through a memo of entry terms, the
search loop counts generated states per state when it checks nothing per step and
skips canonicalising a state it canonicalised before, and the parallel search
ships fingerprints instead of states (moving states only to even out the
workers' frontiers).  Each is held here to the slow, obvious version of the same
thing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs
import pytest

from distcheck.checks.search.explore import Explorer
from distcheck.checks.search.parallel import ParallelExplorer, _rebalance
from distcheck.spec import values
from distcheck.spec.contract import StepProperty
from distcheck.spec.network import MessageSet
from distcheck.spec.registry import REGISTRY
from distcheck.spec.values import Bag, FrozenMap, fingerprint
from tests.checks.test_explore import Counters, TwoCounters


class Colour(enum.Enum):
    RED = 1


@attrs.frozen
class Inner:
    name: str
    n: int


@attrs.frozen
class Mixed:
    text: str
    number: int
    flag: bool
    nothing: None
    colour: Colour
    pair: tuple[int, str]
    members: frozenset[str]
    inner: Inner
    table: FrozenMap[str, int]
    bag: Bag[str]
    msgs: MessageSet[Inner]


def folded(value: object) -> int:
    """An attrs value's fingerprint by its definition: the fields' fingerprints
    folded in order, then mixed."""
    h = values._str_fp(type(value).__name__)
    for name in values.field_names(type(value)):
        h = (h ^ fingerprint(getattr(value, name))) * 0x100000001B3 & values._MASK
    return values._mix(h)


def mixed(text: str = "x", n: int = 3) -> Mixed:
    return Mixed(
        text,
        n,
        True,
        None,
        Colour.RED,
        (n, text),
        frozenset({"a", text}),
        Inner(text, n),
        FrozenMap({"a": 1, text: n}),
        Bag([text, text, "b"]),
        MessageSet([Inner("m", n)]),
    )


@pytest.mark.parametrize("text,n", [("x", 3), ("y", -7), ("", 1 << 70)])
def test_an_attrs_fingerprint_is_the_fold_of_its_fields(text: str, n: int) -> None:
    value = mixed(text, n)
    assert fingerprint(value) == folded(value)
    assert fingerprint(value.inner) == folded(value.inner)
    assert fingerprint(value) != fingerprint(mixed(text + "!", n))


def test_true_and_one_in_a_field_fingerprint_alike_as_python_equates_them() -> None:
    assert Inner("a", True) == Inner("a", 1)
    assert fingerprint(Inner("a", True)) == fingerprint(Inner("a", 1))


def fresh(m: FrozenMap[object, object]) -> int:
    """A map's fingerprint computed from scratch, from its entries."""
    return fingerprint(FrozenMap(dict(m.items())))


@pytest.mark.parametrize("known", [True, False])
def test_a_map_updated_by_one_entry_has_the_fingerprint_of_a_fresh_map(known: bool) -> None:
    m: FrozenMap[object, object] = FrozenMap({("r1", "a1"): Inner("v", 0), "k": None, 2: (1, 2)})
    if known:
        fingerprint(m)  # the incremental path: the sum is known before the update
    steps = [
        m.set(("r1", "a1"), Inner("v", 1)),  # replace
        m.set("new", frozenset({1})),  # add a key
        m.set("k", 5),  # replace None
        m.set("k", None),  # set to the value it has
        m.remove("k"),
        m.remove(2).set(2, (1, 2)),  # back to the original entries
    ]
    for updated in steps:
        assert fingerprint(updated) == fresh(updated)
        assert updated == FrozenMap(dict(updated.items()))
        assert hash(updated) == hash(FrozenMap(dict(updated.items())))
    assert fingerprint(steps[-1]) == fingerprint(m)
    assert m == FrozenMap({("r1", "a1"): Inner("v", 0), "k": None, 2: (1, 2)})  # the original is untouched
    with pytest.raises(KeyError):
        m.remove("absent")


def test_map_updates_stay_right_when_the_memo_of_entries_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "_PART_TEXTS_LIMIT", 2)
    m: FrozenMap[str, int] = FrozenMap({str(i): i for i in range(10)})
    fingerprint(m)
    for i in range(10):
        m = m.set(str(i), i + 100)
        assert fingerprint(m) == fresh(m)  # type: ignore[arg-type]


class Checked(TwoCounters):
    """TwoCounters with a step property that always holds: the explorer then takes
    its general loop (checking every step) rather than the plain one."""

    def step_properties(self) -> Sequence[StepProperty[Counters]]:
        return (StepProperty("Moves", "every step changes a counter", lambda s, t: s != t),)


@pytest.mark.parametrize(
    "limit,bad,symmetry,deadlock",
    [
        (3, None, False, False),
        (3, 3, False, False),
        (4, 5, True, False),
        (6, None, True, False),
        (2, None, False, True),
        (5, 4, False, True),
    ],
)
def test_the_plain_loop_counts_and_stops_as_the_general_loop(
    limit: int, bad: int | None, symmetry: bool, deadlock: bool
) -> None:
    plain = Explorer(TwoCounters(limit, bad), symmetry=symmetry, check_deadlock=deadlock).run()
    general = Explorer(Checked(limit, bad), symmetry=symmetry, check_deadlock=deadlock).run()
    assert plain.verdict == general.verdict
    assert attrs.astuple(plain.stats)[:4] == attrs.astuple(general.stats)[:4]  # distinct, generated, depth, queue
    assert plain.violation == general.violation
    assert plain.reached == general.reached


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_parallel_search_counts_as_the_sequential_one_for_any_number_of_workers(workers: int) -> None:
    spec = REGISTRY["twophase"].make(None, rms=4)
    for symmetry in (False, True):
        one = Explorer(spec, symmetry=symmetry).run()
        many = ParallelExplorer(spec, workers=workers, symmetry=symmetry).run()
        assert (many.verdict, many.reached) == (one.verdict, one.reached)
        assert (many.stats.distinct_states, many.stats.generated_states, many.stats.depth) == (
            one.stats.distinct_states,
            one.stats.generated_states,
            one.stats.depth,
        )


def test_parallel_counterexample_is_the_same_for_the_same_number_of_workers() -> None:
    # Which worker claims a state first is fixed (the owner, then the senders in
    # order), so parents and hence counterexamples do not vary from run to run.
    spec = TwoCounters(6, bad=7)
    first = ParallelExplorer(spec, workers=3).run().violation
    again = ParallelExplorer(spec, workers=3).run().violation
    assert first is not None and first == again
    assert len(first.trace) == 8  # a + b reaches 7 after 7 steps: the shortest way


def test_a_map_reads_as_the_mapping_it_holds() -> None:
    entries = {"a": 1, ("r1", "a2"): None}
    m = FrozenMap(entries)
    assert m.keys() == entries.keys() == {"a", ("r1", "a2")}
    assert list(m.values()) == [1, None] and list(m.items()) == list(entries.items())
    assert m.get("a") == 1 and m.get("b") is None and m.get("b", 7) == 7 and m.get(("r1", "a2"), 7) is None
    assert "a" in m and "b" not in m and ("r1", "a2") in m
    assert dict(m) == entries


@pytest.mark.parametrize("sizes", [[1000, 0], [0, 0, 999], [500, 300, 0, 1], [10, 0], [600, 580], [7000, 6000, 1000]])
def test_rebalancing_moves_states_from_long_frontiers_to_short_ones(sizes: list[int]) -> None:
    moves = _rebalance(sizes)
    after = list(sizes)
    for giver, recipient, count in moves:
        assert count > 0 and giver != recipient and sizes[giver] > sizes[recipient]
        after[giver] -= count
        after[recipient] += count
    assert sum(after) == sum(sizes) and min(after) >= 0
    if moves:
        assert max(after) - min(after) <= 1
    else:  # left alone only when already even enough
        assert max(sizes) - min(sizes) <= max(64, sum(sizes) // 10)
