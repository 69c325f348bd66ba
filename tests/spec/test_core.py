"""Spec values (spec/values.py), their JSON codec (spec/codec.py) and the message set (spec/network.py)."""

from __future__ import annotations

import enum

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from distcheck.spec.codec import from_json, to_json, value_types
from distcheck.spec.network import MessageSet
from distcheck.spec.values import Bag, FrozenMap, canonical_text, fingerprint

words = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8)


@given(words, words)
def test_bag_equality_ignores_order_and_counts_copies(xs: list[str], ys: list[str]) -> None:
    assert (Bag(xs) == Bag(ys)) == (sorted(xs) == sorted(ys))
    if sorted(xs) == sorted(ys):
        assert hash(Bag(xs)) == hash(Bag(ys))
        assert canonical_text(Bag(xs)) == canonical_text(Bag(ys))


@given(words)
def test_bag_add_remove(xs: list[str]) -> None:
    bag = Bag(xs)
    assert len(bag) == len(xs)
    for x in set(xs):
        assert bag.remove(x).count(x) == xs.count(x) - 1
        assert bag.add(x).count(x) == xs.count(x) + 1
    with pytest.raises(KeyError):
        bag.remove("zzz")


def test_frozen_map_is_a_value() -> None:
    m = FrozenMap({"x": 1, "y": 2})
    n = FrozenMap({"y": 2, "x": 1})
    assert m == n and hash(m) == hash(n) and canonical_text(m) == canonical_text(n)
    assert m.set("x", 5)["x"] == 5 and m["x"] == 1  # set() returns a new map
    assert {m: "ok"}[n] == "ok"


@given(st.frozensets(st.text(max_size=3), max_size=6))
def test_canonical_text_of_sets_is_order_free(items: frozenset[str]) -> None:
    rebuilt = frozenset(sorted(items, reverse=True))
    assert canonical_text(items) == canonical_text(rebuilt)
    assert fingerprint(items) == fingerprint(rebuilt)


def test_canonical_text_rejects_non_values() -> None:
    with pytest.raises(TypeError, match="not a spec value"):
        canonical_text([1, 2])  # lists are mutable


@attrs.frozen
class Msg:
    to: str
    n: int


def test_message_set_keeps_messages() -> None:
    net = MessageSet[Msg]().send(Msg("a", 1)).send(Msg("a", 1), Msg("b", 2))
    assert net.deliverable() == [Msg("a", 1), Msg("b", 2)]
    assert Msg("a", 1) in net  # reading does not consume
    assert net.without(Msg("a", 1)).deliverable() == [Msg("b", 2)]
    assert net.added_since(MessageSet[Msg]().send(Msg("b", 2))) == [Msg("a", 1)]


@attrs.frozen
class Carrier:
    msg: Msg


def test_json_round_trip_of_values() -> None:
    types = value_types(Msg, Carrier)
    for value in (Msg("a", 3), Carrier(Msg("b", 1)), Carrier(Msg("c", 2))):
        assert from_json(to_json(value), types) == value


def test_from_json_errors_are_readable() -> None:
    types = value_types(Msg)
    with pytest.raises(ValueError, match="unknown type 'Nope'"):
        from_json({"type": "Nope"}, types)
    with pytest.raises(ValueError, match="missing field"):
        from_json({"type": "Msg", "to": "a"}, types)
    with pytest.raises(ValueError, match="unknown field"):
        from_json({"type": "Msg", "to": "a", "n": 1, "zz": 0}, types)


def test_equal_values_have_equal_texts_whatever_the_cache_saw_first() -> None:
    """Parts' texts are cached by value; Python says (True,) == (1,), so their texts
    must agree, or a fingerprint would depend on which one a run met first."""
    assert canonical_text((True, "x")) == canonical_text((1, "x"))
    assert canonical_text(FrozenMap({"a": (1,)})) == canonical_text(FrozenMap({"a": (True,)}))
    assert canonical_text(frozenset({(0,)})) == canonical_text(frozenset({(False,)}))
    assert canonical_text(("1",)) != canonical_text((1,))  # a string is not a number


class Colour(enum.Enum):
    RED = 1


def test_canonical_text_of_every_kind_of_value() -> None:
    assert canonical_text(None) == "None"
    assert canonical_text("a") == "'a'"
    assert canonical_text(True) == canonical_text(1) == "1"
    assert canonical_text(Colour.RED) == "Colour.RED"
    assert canonical_text((1, "a")) == "(1,'a')"
    assert canonical_text(Msg("a", 1)) == "Msg('a',1)"
    assert canonical_text(FrozenMap({"b": 1, "a": 2})) == "['a':2,'b':1]"
    assert canonical_text(Bag(["x", "x", "y"])) == "Bag{'x'*2,'y'*1}"


def test_fingerprint_rejects_what_is_not_a_value() -> None:
    with pytest.raises(TypeError, match="is not a spec value"):
        fingerprint([1, 2])
    with pytest.raises(TypeError, match="is not a spec value"):
        fingerprint(object())


@given(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 3)), st.sampled_from("abcde"), st.integers(0, 3))
def test_a_maps_fingerprint_after_set_equals_the_fingerprint_of_the_same_map_built_whole(
    items: dict[str, int], key: str, value: int
) -> None:
    before = FrozenMap(items)
    fingerprint(before)  # computed first, so set() updates it by one entry
    after = before.set(key, value)
    assert fingerprint(after) == fingerprint(FrozenMap({**items, key: value}))
    assert after == FrozenMap({**items, key: value})


def test_message_set_fingerprint_is_kept_up_to_date_by_send() -> None:
    empty = MessageSet[Msg]()
    fingerprint(empty)
    grown = empty.send(Msg("a", 1)).send(Msg("b", 2))
    assert fingerprint(grown) == fingerprint(MessageSet([Msg("b", 2), Msg("a", 1)]))
    assert fingerprint(grown) != fingerprint(empty)


def test_to_json_writes_plain_json_for_every_kind_of_value() -> None:
    value = (None, True, 3, "s", frozenset({"b", "a"}), Colour.RED, Msg("a", 1), FrozenMap({"k": (1, 2)}))
    assert to_json(value) == [None, True, 3, "s", ["a", "b"], "RED", {"type": "Msg", "to": "a", "n": 1}, {"k": [1, 2]}]
    assert to_json(FrozenMap({1: "x"})) == {"map": [[1, "x"]]}
    assert to_json(Bag(["x", "x"])) == {"bag": [["x", 2]]}
    with pytest.raises(TypeError, match="is not a spec value"):
        to_json(object())


def test_value_types_collects_attrs_classes_of_modules_and_given_types() -> None:
    import sys

    here = value_types(sys.modules[__name__])
    assert here["Msg"] is Msg and here["Carrier"] is Carrier
    assert "Colour" not in here and "pytest" not in here  # only attrs classes
    assert value_types(Msg) == {"Msg": Msg}


def test_bag_add_counts_new_and_old_members() -> None:
    bag = Bag[str]().add("x").add("x").add("y", 3)
    assert (bag.count("x"), bag.count("y"), bag.count("z"), len(bag)) == (2, 3, 0, 5)
